//! Replies written for these tests in the shape the Redfish schema gives them.

use super::*;

const ROOT: &str = r#"{
  "@odata.id": "/redfish/v1/",
  "RedfishVersion": "1.6.0",
  "Systems": {"@odata.id": "/redfish/v1/Systems"},
  "SessionService": {"@odata.id": "/redfish/v1/SessionService"}
}"#;

const SYSTEMS: &str = r#"{
  "@odata.id": "/redfish/v1/Systems",
  "Members@odata.count": 2,
  "Members": [
    {"@odata.id": "/redfish/v1/Systems/node-a"},
    {"@odata.id": "/redfish/v1/Systems/node-b"}
  ]
}"#;

const SYSTEM: &str = r##"{
  "@odata.id": "/redfish/v1/Systems/node-a",
  "PowerState": "Off",
  "Boot": {
    "BootSourceOverrideEnabled": "Disabled",
    "BootSourceOverrideTarget": "Hdd",
    "BootSourceOverrideTarget@Redfish.AllowableValues": ["Pxe", "Hdd", "Cd", "BiosSetup"]
  },
  "Actions": {
    "#ComputerSystem.Reset": {
      "target": "/redfish/v1/Systems/node-a/Actions/ComputerSystem.Reset",
      "ResetType@Redfish.AllowableValues": [
        "On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi"
      ]
    }
  }
}"##;

#[test]
fn root_and_collection_lead_to_the_first_system() {
    assert_eq!(
        systems_link(ROOT.as_bytes()).unwrap(),
        "/redfish/v1/Systems"
    );
    assert_eq!(
        first_member(SYSTEMS.as_bytes()).unwrap(),
        "/redfish/v1/Systems/node-a"
    );
    let empty = br#"{"Members": [], "Members@odata.count": 0}"#;
    assert_eq!(first_member(empty), Err(ReplyError::NoSystem));
    assert_eq!(
        systems_link(br#"{"RedfishVersion": "1.0.0"}"#),
        Err(ReplyError::Missing("Systems"))
    );
    assert_eq!(
        systems_link(b"<html>login</html>"),
        Err(ReplyError::NotJson)
    );
    assert_eq!(systems_link(b"[1, 2]"), Err(ReplyError::NotJson));
    // A link that is not a path is not followed anywhere.
    let odd = br#"{"Systems": {"@odata.id": "http://elsewhere/x"}}"#;
    assert_eq!(systems_link(odd), Err(ReplyError::Missing("Systems")));
}

#[test]
fn a_system_gives_power_reset_target_and_boot() {
    let s = parse_system(SYSTEM.as_bytes()).unwrap();
    assert!(!s.power);
    assert_eq!(
        s.reset_target,
        "/redfish/v1/Systems/node-a/Actions/ComputerSystem.Reset"
    );
    assert_eq!(s.reset_types.len(), 6);
    assert_eq!(s.boot_target.as_deref(), Some("Hdd"));
    let on = SYSTEM.replace(r#""PowerState": "Off""#, r#""PowerState": "PoweringOn""#);
    assert!(parse_system(on.as_bytes()).unwrap().power);
    let odd = SYSTEM.replace(r#""PowerState": "Off""#, r#""PowerState": "Sideways""#);
    assert_eq!(
        parse_system(odd.as_bytes()),
        Err(ReplyError::PowerState("Sideways".into()))
    );
    let no_state = SYSTEM.replace(r#""PowerState": "Off","#, "");
    assert_eq!(
        parse_system(no_state.as_bytes()),
        Err(ReplyError::Missing("PowerState"))
    );
}

#[test]
fn reset_types_follow_what_the_system_offers() {
    let s = parse_system(SYSTEM.as_bytes()).unwrap();
    assert_eq!(reset_type(Op::Reset(POWER_ON), &s), Ok(Some("On")));
    assert_eq!(reset_type(Op::Reset(POWER_OFF), &s), Ok(Some("ForceOff")));
    assert_eq!(
        reset_type(Op::Reset(SOFT_OFF), &s),
        Ok(Some("GracefulShutdown"))
    );
    // No PowerCycle offered: the cycle becomes a ForceRestart.
    assert_eq!(reset_type(Op::Reset(CYCLE), &s), Ok(Some("ForceRestart")));
    assert_eq!(reset_type(Op::Status, &s), Ok(None));
    assert_eq!(reset_type(Op::Boot(BootTarget::Pxe), &s), Ok(None));
    let mut with_cycle = s.clone();
    with_cycle.reset_types.push("PowerCycle".into());
    assert_eq!(
        reset_type(Op::Reset(CYCLE), &with_cycle),
        Ok(Some("PowerCycle"))
    );
    let mut unlisted = s.clone();
    unlisted.reset_types.clear();
    assert_eq!(
        reset_type(Op::Reset(CYCLE), &unlisted),
        Ok(Some("PowerCycle"))
    );
    let mut only_on = s;
    only_on.reset_types = vec!["On".into()];
    assert!(matches!(
        reset_type(Op::Reset(POWER_OFF), &only_on),
        Err(ReplyError::NoResetType { .. })
    ));
}

#[test]
fn bodies_are_the_schema_shapes() {
    let v: Value = serde_json::from_str(&boot_body(BootTarget::Pxe)).unwrap();
    assert_eq!(v["Boot"]["BootSourceOverrideTarget"], "Pxe");
    assert_eq!(v["Boot"]["BootSourceOverrideEnabled"], "Once");
    let v: Value = serde_json::from_str(&reset_body("ForceOff")).unwrap();
    assert_eq!(v, json!({"ResetType": "ForceOff"}));
    // A password with quotes and backslashes stays one JSON string.
    let v: Value = serde_json::from_str(&session_body("admin", r#"p"w\x"#)).unwrap();
    assert_eq!(v["Password"], r#"p"w\x"#);
}

#[test]
fn session_paths_and_error_messages() {
    let full = "https://10.0.0.5:8443/redfish/v1/SessionService/Sessions/7";
    assert_eq!(
        session_path(Some(full), b"").as_deref(),
        Some("/redfish/v1/SessionService/Sessions/7")
    );
    let body = br#"{"@odata.id": "/redfish/v1/SessionService/Sessions/9", "Id": "9"}"#;
    assert_eq!(
        session_path(None, body).as_deref(),
        Some("/redfish/v1/SessionService/Sessions/9")
    );
    assert_eq!(session_path(Some("nonsense"), b"{}"), None);
    let err = br#"{"error": {"code": "Base.1.0.GeneralError", "message": "A general error",
        "@Message.ExtendedInfo": [{"Message": "The action is not allowed now."}]}}"#;
    assert_eq!(
        error_message(err).as_deref(),
        Some("The action is not allowed now.")
    );
    let plain = br#"{"error": {"code": "x", "message": "Bad thing"}}"#;
    assert_eq!(error_message(plain).as_deref(), Some("Bad thing"));
    assert_eq!(error_message(b"Unauthorized"), None);
}

#[test]
fn basic_credentials_are_rfc_4648_base64() {
    // RFC 7617's own example, and the three padding lengths.
    assert_eq!(
        basic_credentials("Aladdin", "open sesame"),
        "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    assert_eq!(basic_credentials("a", ""), "YTo=");
    assert_eq!(basic_credentials("ab", ""), "YWI6");
    assert_eq!(basic_credentials("abc", ""), "YWJjOg==");
}
