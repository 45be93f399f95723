//! `admin:` of `config.yml` and `ADMIN_API_KEY`: the operator key that opens the status page.

use std::fmt;

use subtle::ConstantTimeEq;

use super::ConfigError;
use super::yaml::Section;

/// The environment variable that sets the operator key (it wins over `admin.apiKey`, so a key
/// can be injected without writing it into a file).
pub const ADMIN_API_KEY_ENV: &str = "ADMIN_API_KEY";

const ADMIN_KEYS: [&str; 1] = ["apiKey"];

/// The operator key of `/status` and `/status.json`. Its `Debug` never shows it, so a logged
/// configuration cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminKey(String);

impl AdminKey {
    /// A key; `None` when `key` is empty (an empty key would open the page to anyone).
    pub fn new(key: &str) -> Option<AdminKey> {
        (!key.is_empty()).then(|| AdminKey(key.to_owned()))
    }

    /// Whether `given` is the key, compared in constant time.
    pub fn matches(&self, given: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(given.as_bytes()))
    }
}

impl fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminKey(<redacted>)")
    }
}

/// The operator key: `ADMIN_API_KEY` (`env`), else `admin.apiKey` of `section`; none at all
/// turns the status page off.
pub(super) fn admin_key(
    section: Option<Section<'_>>,
    env: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<Option<AdminKey>, ConfigError> {
    let from_file = match section {
        Some(section) => {
            section.warn_unknown(&ADMIN_KEYS, &[], warnings);
            match section.string("apiKey")? {
                Some(key) => Some(
                    AdminKey::new(key)
                        .ok_or_else(|| section.error("apiKey", "must not be empty"))?,
                ),
                None => None,
            }
        }
        None => None,
    };
    Ok(env.and_then(AdminKey::new).or(from_file))
}
