//! Identifiers of policy objects: newtypes over strings, so a rule id is never passed where an
//! asset id is expected.
//!
//! Ids are opaque text chosen by the policy author (`line3-plc`, `alice`). They serialize as plain
//! strings, which is how the journal records them. Validation (in `parse`) restricts their
//! characters; these types themselves accept any string.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wrap a string as this id.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl core::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

id_type!(
    /// The site a policy is for (`plant-a`); bundles are accepted only for their own site.
    SiteId
);
id_type!(
    /// A network segment (`line3`, `corp`).
    SegmentId
);
id_type!(
    /// An OT asset (`line3-plc`).
    AssetId
);
id_type!(
    /// A person, vendor account, approver or operator (`alice`, `sam`).
    IdentityId
);
id_type!(
    /// A role (`maintenance`, `shift-supervisor`).
    RoleId
);
id_type!(
    /// A rule (`line3-maintenance`).
    RuleId
);
id_type!(
    /// A schedule (`weekend-maintenance`).
    ScheduleId
);
id_type!(
    /// A trusted break-glass panel (`panel-hall2`).
    PanelId
);
