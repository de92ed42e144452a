//! Reading environment variables with every problem collected, so start-up
//! reports all of them at once, each naming its variable.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Everything wrong with the configuration, one line per variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `VARIABLE: what is wrong` lines.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A source of variables (the process environment, or a map in tests) plus the
/// problems found so far.
pub struct Vars {
    values: HashMap<String, String>,
    problems: Vec<String>,
    /// Secrets given as an empty file: name → path (for the messages).
    empty_files: HashMap<String, String>,
}

impl Vars {
    /// Variables from the process environment.
    pub fn from_env() -> Self {
        Self::from_map(std::env::vars().collect())
    }

    /// Variables from a map (tests, tools). A secret given as `NAME_FILE`
    /// is read here (see [`super::secrets::SECRETS`]); its problems are
    /// reported with the others.
    pub fn from_map(mut values: HashMap<String, String>) -> Self {
        let resolved = super::secrets::resolve(&mut values);
        Self { values, problems: resolved.problems, empty_files: resolved.empty }
    }

    /// Sets a variable (a command-line argument that stands for one).
    pub fn set(&mut self, name: &str, value: &str) {
        self.values.insert(name.to_owned(), value.to_owned());
    }

    /// The raw value, `None` when unset or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// Records a problem with `name`.
    pub fn problem(&mut self, name: &str, what: impl fmt::Display) {
        self.problems.push(format!("{name}: {what}"));
    }

    /// A string with a default.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    /// A string that must be set.
    pub fn required(&mut self, name: &str) -> String {
        match self.get(name) {
            Some(v) => v.to_owned(),
            None => {
                match self.empty_files.get(name).cloned() {
                    Some(path) => self.problem(name, format!("is required but {name}_FILE ({path}) is empty")),
                    None => self.problem(name, "is required but not set"),
                }
                String::new()
            }
        }
    }

    /// A value parsed with `FromStr`, with a default when unset.
    pub fn parse<T>(&mut self, name: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let Some(raw) = self.get(name).map(str::to_owned) else {
            return default;
        };
        match raw.parse() {
            Ok(v) => v,
            Err(e) => {
                self.problem(name, format!("cannot parse {raw:?}: {e}"));
                default
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn ranged<T>(&mut self, name: &str, default: T, min: T, max: T) -> T
    where
        T: FromStr + PartialOrd + Copy + fmt::Display,
        T::Err: fmt::Display,
    {
        let v = self.parse(name, default);
        if v < min || v > max {
            self.problem(name, format!("must be between {min} and {max}, got {v}"));
            return default;
        }
        v
    }

    /// A boolean: `true/false/1/0/yes/no/on/off`.
    pub fn flag(&mut self, name: &str, default: bool) -> bool {
        let Some(raw) = self.get(name).map(str::to_ascii_lowercase) else {
            return default;
        };
        match raw.as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                self.problem(name, format!("expected true or false, got {raw:?}"));
                default
            }
        }
    }

    /// Whole seconds within `min..=max`.
    pub fn seconds(&mut self, name: &str, default: u64, min: u64, max: u64) -> Duration {
        Duration::from_secs(self.ranged(name, default, min, max))
    }

    /// Milliseconds within `min..=max`.
    pub fn millis(&mut self, name: &str, default: u64, min: u64, max: u64) -> Duration {
        Duration::from_millis(self.ranged(name, default, min, max))
    }

    /// A comma-separated list; blank items dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Ends reading: the problems, if any.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() { Ok(()) } else { Err(ConfigError { problems: self.problems }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        Vars::from_map(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn every_problem_is_reported_with_its_variable() {
        let mut v = vars(&[("A", "x"), ("B", "0"), ("C", "maybe")]);
        let _: u32 = v.parse("A", 1);
        let _: u32 = v.ranged("B", 5, 1, 10);
        let _ = v.flag("C", false);
        let _ = v.required("D");
        let err = v.finish().expect_err("four problems");
        assert_eq!(err.problems.len(), 4, "{err}");
        for name in ["A:", "B:", "C:", "D:"] {
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn blank_values_count_as_unset() {
        let mut v = vars(&[("A", "  ")]);
        assert_eq!(v.parse("A", 7u32), 7);
        assert!(v.finish().is_ok());
    }
}
