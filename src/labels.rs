//! Fieldless enums whose variants have stable names (metric labels, log words), declared
//! once with [`labels!`]: the variants and their names stand side by side, and `ALL`,
//! `NAMES`, `name()` and `index()` come from that one list, so a counter table indexed by
//! the enum cannot drift from the names `/metrics` prints.
//!
//! Pure (no I/O, no clock): usable from `wire`/`core` modules. Not here: the counters
//! themselves (`crate::counters`).

/// Declares `enum $name { Variant = "name", ... }` with, on the enum: `ALL` (every variant in
/// declaration order), `NAMES` (their names, same order), `name(self)` and `index(self)`
/// (its position in `ALL`). Derives are the caller's; `Copy` is needed.
///
/// ```ignore
/// crate::labels::labels! {
///     /// Login outcomes.
///     #[derive(Debug, Clone, Copy, PartialEq, Eq)]
///     pub enum Login { Ok = "ok", Failed = "failed" }
/// }
/// ```
macro_rules! labels {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $label:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        #[allow(dead_code)] // not every enum uses every accessor
        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The variants' names, in the order of `ALL`.
            pub const NAMES: &'static [&'static str] = &[$($label),+];

            /// The stable name of this variant.
            pub const fn name(self) -> &'static str {
                Self::NAMES[self as usize]
            }

            /// The position of this variant in `ALL` (and its name in `NAMES`).
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}
pub(crate) use labels;

#[cfg(test)]
mod tests {
    labels! {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Colour {
            Red = "red",
            /// Documented variants keep their docs.
            Green = "green",
            Blue = "blue",
        }
    }

    #[test]
    fn names_and_indexes_follow_the_declaration() {
        assert_eq!(Colour::ALL, [Colour::Red, Colour::Green, Colour::Blue]);
        assert_eq!(Colour::NAMES, ["red", "green", "blue"]);
        assert_eq!(Colour::Green.name(), "green");
        assert_eq!(Colour::Blue.index(), 2);
        for (i, c) in Colour::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(c.name(), Colour::NAMES[i]);
        }
    }
}
