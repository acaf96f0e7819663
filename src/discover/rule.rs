//! Naming rules: identity by location. A rule such as `rack1-sw1 port 1-40 -> node[001-040]`
//! names the machine plugged into port N of switch `rack1-sw1` (N from 1 to 40) `node00N`.
//!
//! Pure: parsing ([`Rule::parse`]), overlap checks ([`Rule::overlaps`]) and matching a
//! [`Location`] (from the LLDP neighbour the agent saw, or DHCP option 82 from a relay) to a
//! node name ([`Rule::name_for`]). A switch matches by LLDP system name or chassis id, or by
//! the relay's remote-id, compared without regard to ASCII case; the port number is the
//! trailing decimal digits of the LLDP port id, else of its port description, or of the
//! relay's circuit-id (`swp12`, `Ethernet1/12`, `ge-0/0/12` are all port 12).
//!
//! Not here: storing rules or adopting nodes (`crate::admin`), SNMP forwarding tables.

use std::fmt;

/// Most names one rule may produce, so a typo cannot create a million-node range.
pub const MAX_PORTS: u32 = 4096;

/// A parsed naming rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The switch, as its LLDP system name, chassis id or relay remote-id.
    pub switch: String,
    pub first_port: u32,
    pub last_port: u32,
    /// Name before the number, the first number, its zero-padded width, name after it.
    prefix: String,
    first_number: u32,
    width: usize,
    suffix: String,
}

/// A stored naming rule: one row of the store's `rules` table, keyed by the rule's canonical
/// text, with what an adopted node gets besides its name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NamingRule {
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// Why a rule was refused; each names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "a rule reads SWITCH port FIRST[-LAST] -> NAME \
         (like 'rack1-sw1 port 1-40 -> node[001-040]')"
    )]
    Shape,
    #[error("{0:?} is not a switch name (letters, digits, '-', '_', '.', ':', '/')")]
    Switch(String),
    #[error("{0:?} is not a port number or range (like 7 or 1-40, first <= last)")]
    Ports(String),
    #[error("{0:?} is not a name pattern (like node[001-040], or one name for one port)")]
    Pattern(String),
    #[error("the rule names {names} nodes for {ports} ports; the two ranges must be equally long")]
    Count { ports: u32, names: u32 },
    #[error("a rule covers at most {MAX_PORTS} ports")]
    TooMany,
    #[error("{0:?} would not be a valid node name")]
    Name(String),
}

/// Where a machine is plugged in, as far as drover can tell.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// Names the switch may go by (LLDP system name and chassis id, relay remote-id).
    pub switch: Vec<String>,
    pub port: Option<u32>,
}

impl Location {
    /// The location an LLDP neighbour gives.
    pub fn from_lldp(n: &super::lldp::Neighbour) -> Location {
        let mut switch = Vec::new();
        switch.extend(n.system_name.clone());
        switch.push(n.chassis_id.clone());
        // A port id that is a MAC address ends in hex, not a port number.
        let by_id = match n.port_id.parse::<crate::store::model::Mac>() {
            Ok(_) => None,
            Err(_) => trailing_number(&n.port_id),
        };
        let port = by_id.or_else(|| n.port_description.as_deref().and_then(trailing_number));
        Location { switch, port }
    }

    /// The location a relay's option 82 (raw sub-options as hex, as leases record it) gives:
    /// remote-id (sub-option 2) names the switch, circuit-id (sub-option 1) the port.
    /// `None` when the option is malformed or carries neither.
    pub fn from_relay(agent_info_hex: &str) -> Option<Location> {
        let raw = from_hex(agent_info_hex)?;
        let mut loc = Location::default();
        let mut rest = raw.as_slice();
        while let [code, len, tail @ ..] = rest {
            let body = tail.get(..usize::from(*len))?;
            match code {
                1 => loc.port = printable(body).as_deref().and_then(trailing_number),
                2 => loc.switch.extend(printable(body)),
                _ => {}
            }
            rest = &tail[usize::from(*len)..];
        }
        (!loc.switch.is_empty() || loc.port.is_some()).then_some(loc)
    }
}

impl Rule {
    /// Parses `SWITCH port FIRST[-LAST] -> PATTERN`.
    pub fn parse(text: &str) -> Result<Rule, RuleError> {
        let (left, pattern) = text.split_once("->").ok_or(RuleError::Shape)?;
        let words: Vec<&str> = left.split_whitespace().collect();
        let [switch, port_word, ports] = words.as_slice() else {
            return Err(RuleError::Shape);
        };
        if !port_word.eq_ignore_ascii_case("port") {
            return Err(RuleError::Shape);
        }
        let switch_ok = switch.len() <= 255
            && switch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
        if !switch_ok {
            return Err(RuleError::Switch(switch.to_string()));
        }
        let (first_port, last_port) =
            range(ports).ok_or_else(|| RuleError::Ports(ports.to_string()))?;
        let count = last_port - first_port + 1;
        if count > MAX_PORTS {
            return Err(RuleError::TooMany);
        }
        let pattern = pattern.trim();
        let bad_pattern = || RuleError::Pattern(pattern.to_string());
        let (prefix, first_number, width, names, suffix) = match pattern.split_once('[') {
            None => (pattern.to_string(), 0, 0, 1, String::new()),
            Some((prefix, rest)) => {
                let (digits, suffix) = rest.split_once(']').ok_or_else(bad_pattern)?;
                let (a, _) = digits.split_once('-').ok_or_else(bad_pattern)?;
                let (first, last) = range(digits).ok_or_else(bad_pattern)?;
                (
                    prefix.to_string(),
                    first,
                    a.len(),
                    last - first + 1,
                    suffix.to_string(),
                )
            }
        };
        if pattern.is_empty() || pattern.contains(char::is_whitespace) {
            return Err(bad_pattern());
        }
        if names != count {
            return Err(RuleError::Count {
                ports: count,
                names,
            });
        }
        let rule = Rule {
            switch: switch.to_string(),
            first_port,
            last_port,
            prefix,
            first_number,
            width,
            suffix,
        };
        // The longest number decides whether every name is valid.
        for port in [first_port, last_port] {
            let name = rule.name_at(port);
            if !crate::store::model::valid_name(&name) {
                return Err(RuleError::Name(name));
            }
        }
        Ok(rule)
    }

    /// The node name for `port` (within the rule's ports).
    fn name_at(&self, port: u32) -> String {
        if self.width == 0 {
            return self.prefix.clone();
        }
        let number = self.first_number + (port - self.first_port);
        format!("{}{number:0w$}{}", self.prefix, self.suffix, w = self.width)
    }

    /// The name this rule gives a machine at `at`, if the rule covers that place.
    pub fn name_for(&self, at: &Location) -> Option<String> {
        let port = at.port?;
        let on_switch = at
            .switch
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&self.switch));
        (on_switch && (self.first_port..=self.last_port).contains(&port))
            .then(|| self.name_at(port))
    }

    /// Whether both rules cover some port of the same switch.
    pub fn overlaps(&self, other: &Rule) -> bool {
        self.switch.eq_ignore_ascii_case(&other.switch)
            && self.first_port <= other.last_port
            && other.first_port <= self.last_port
    }
}

/// The canonical text of a rule (what `rule list` shows and `rule remove` takes).
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} port {}", self.switch, self.first_port)?;
        if self.last_port != self.first_port {
            write!(f, "-{}", self.last_port)?;
        }
        if self.width == 0 {
            return write!(f, " -> {}", self.prefix);
        }
        let last = self.first_number + (self.last_port - self.first_port);
        write!(
            f,
            " -> {}[{:0w$}-{last:0w$}]{}",
            self.prefix,
            self.first_number,
            self.suffix,
            w = self.width
        )
    }
}

/// `A` or `A-B` with A <= B, decimal.
fn range(s: &str) -> Option<(u32, u32)> {
    let number = |t: &str| {
        (!t.is_empty() && t.len() <= 9 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<u32>().ok())
            .flatten()
    };
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => (number(s)?, number(s)?),
    };
    (a <= b).then_some((a, b))
}

/// The decimal number a string ends with (`swp12` -> 12).
fn trailing_number(s: &str) -> Option<u32> {
    let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let tail = &s[s.len() - digits..];
    (digits > 0 && digits <= 9)
        .then(|| tail.parse().ok())
        .flatten()
}

/// Printable ASCII bytes as text (trailing NULs dropped); `None` for binary.
fn printable(bytes: &[u8]) -> Option<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    (!bytes.is_empty() && bytes.iter().all(|b| (0x20..0x7f).contains(b)))
        .then(|| bytes.iter().map(|&b| char::from(b)).collect())
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::lldp::Neighbour;

    fn at(switch: &str, port: u32) -> Location {
        Location {
            switch: vec![switch.into()],
            port: Some(port),
        }
    }

    #[test]
    fn parses_the_issue_example_and_names_by_port() {
        let r = Rule::parse("rack1-sw1 port 1-40 -> node[001-040]").unwrap();
        assert_eq!(r.name_for(&at("rack1-sw1", 1)).as_deref(), Some("node001"));
        assert_eq!(r.name_for(&at("RACK1-SW1", 12)).as_deref(), Some("node012"));
        assert_eq!(r.name_for(&at("rack1-sw1", 40)).as_deref(), Some("node040"));
        assert_eq!(r.name_for(&at("rack1-sw1", 41)), None);
        assert_eq!(r.name_for(&at("rack1-sw2", 1)), None);
        assert_eq!(r.to_string(), "rack1-sw1 port 1-40 -> node[001-040]");
    }

    #[test]
    fn offsets_suffixes_and_single_ports() {
        let r = Rule::parse("  sw2   PORT 10-12->r2n[7-9]-a ").unwrap();
        assert_eq!(r.name_for(&at("sw2", 11)).as_deref(), Some("r2n8-a"));
        assert_eq!(r.to_string(), "sw2 port 10-12 -> r2n[7-9]-a");
        let one = Rule::parse("sw2 port 48 -> login1").unwrap();
        assert_eq!(one.name_for(&at("sw2", 48)).as_deref(), Some("login1"));
        assert_eq!(one.to_string(), "sw2 port 48 -> login1");
        assert!(one.overlaps(&Rule::parse("SW2 port 40-48 -> x[1-9]").unwrap()));
        assert!(!one.overlaps(&r));
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let err = |s: &str| Rule::parse(s).unwrap_err();
        assert_eq!(err("sw1 1-40 -> n[1-40]"), RuleError::Shape);
        assert_eq!(err("sw1 port 1-40 n[1-40]"), RuleError::Shape);
        assert_eq!(err("sw 1 port 1 -> n"), RuleError::Shape);
        assert_eq!(
            err("sw1 port 40-1 -> n[1-40]"),
            RuleError::Ports("40-1".into())
        );
        assert_eq!(err("sw1 port x -> n"), RuleError::Ports("x".into()));
        assert_eq!(
            err("sw1 port 1-40 -> n[1-40"),
            RuleError::Pattern("n[1-40".into())
        );
        assert_eq!(err("sw1 port 1-40 -> "), RuleError::Pattern("".into()));
        assert_eq!(
            err("sw1 port 1-40 -> n[1-30]"),
            RuleError::Count {
                ports: 40,
                names: 30
            }
        );
        assert_eq!(err("sw1 port 1-99999 -> n[1-99999]"), RuleError::TooMany);
        assert_eq!(
            err("sw1 port 1-2 -> -n[1-2]"),
            RuleError::Name("-n1".into())
        );
        assert_eq!(err("s;w port 1 -> n"), RuleError::Switch("s;w".into()));
    }

    #[test]
    fn lldp_locations_use_system_name_chassis_and_port_numbers() {
        let n = Neighbour {
            chassis_id: "00:1b:21:3c:4d:5e".into(),
            port_id: "Ethernet1/12".into(),
            port_description: None,
            system_name: Some("rack1-sw1".into()),
            ttl: 120,
        };
        let loc = Location::from_lldp(&n);
        assert_eq!(loc.port, Some(12));
        let by_chassis = Rule::parse("00:1b:21:3c:4d:5e port 12 -> n12").unwrap();
        assert_eq!(by_chassis.name_for(&loc).as_deref(), Some("n12"));
        // A port id without a number (a MAC) falls back to the description.
        let n = Neighbour {
            port_id: "00:1b:21:3c:4d:60".into(),
            port_description: Some("ge-0/0/7".into()),
            ..n
        };
        assert_eq!(Location::from_lldp(&n).port, Some(7));
        let n = Neighbour {
            port_id: "uplink".into(),
            port_description: None,
            ..n
        };
        assert_eq!(Location::from_lldp(&n).port, None);
    }

    #[test]
    fn relay_option_82_gives_switch_and_port() {
        // Circuit-id "eth0/1/12", remote-id "rack1-sw1".
        let hex = "0109657468302f312f313202097261636b312d737731";
        let loc = Location::from_relay(hex).unwrap();
        assert_eq!(loc.port, Some(12));
        assert_eq!(loc.switch, vec!["rack1-sw1".to_string()]);
        // Truncated sub-option, odd hex, nothing usable.
        assert_eq!(Location::from_relay("0109657468"), None);
        assert_eq!(Location::from_relay("010"), None);
        assert_eq!(Location::from_relay("0501ff"), None);
    }
}
