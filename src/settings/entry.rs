//! The entry points of the settings table: `ringraft node`'s flags (clap), TOML (serde: the node
//! file and a bench config's `[node]`), and the flags a launcher passes to a node process. All
//! parse through [`SettingsPatch::set_text`], so a bad value gets the same error everywhere.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::{Settings, SettingsPatch, SETTINGS};

impl SettingsPatch {
    /// The `ringraft node` flags that carry these settings (`--tick-ms 5 ...`).
    pub fn flags(&self) -> Vec<String> {
        self.given()
            .into_iter()
            .flat_map(|(name, value)| [format!("--{}", name.replace('_', "-")), value])
            .collect()
    }
}

impl clap::FromArgMatches for SettingsPatch {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut patch = SettingsPatch::default();
        patch.update_from_arg_matches(matches)?;
        Ok(patch)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        for row in SETTINGS {
            if let Some(text) = matches.get_one::<String>(row.name) {
                self.set_text(row.name, text).map_err(|e| {
                    clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e}\n"))
                })?;
            }
        }
        Ok(())
    }
}

impl clap::Args for SettingsPatch {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        SETTINGS.iter().fold(cmd, |cmd, row| {
            let name = row.name;
            let mut arg = clap::Arg::new(name)
                .long(leak(row.flag()))
                .help(format!(
                    "{} [default: {}{}]",
                    row.help_line(),
                    row.default_text(),
                    if row.switch {
                        String::new()
                    } else {
                        format!("; {}", row.bound)
                    }
                ))
                // Checked here too, so that clap's message names the flag as well as the setting.
                .value_parser(move |text: &str| {
                    SettingsPatch::default()
                        .set_text(name, text)
                        .map(|()| text.to_string())
                });
            arg = if row.switch {
                arg.value_name("BOOL")
                    .num_args(0..=1)
                    .default_missing_value("true")
            } else {
                arg.value_name("N")
            };
            cmd.arg(arg)
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// clap keeps flag names as `&'static str` (without its `string` feature); the table is fixed,
/// so each name is leaked once per command built.
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// A TOML (or any self-describing format's) scalar, before it is checked as a setting.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Other(de::IgnoredAny),
}

struct PatchVisitor;

impl<'de> Visitor<'de> for PatchVisitor {
    type Value = SettingsPatch;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table of node settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SettingsPatch, A::Error> {
        let mut patch = SettingsPatch::default();
        while let Some(key) = map.next_key::<String>()? {
            let text = match map.next_value::<Scalar>()? {
                Scalar::Bool(b) => b.to_string(),
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(x) => x.to_string(),
                Scalar::Text(t) => format!("\"{t}\""),
                Scalar::Other(_) => "a table or array".to_string(),
            };
            patch.set_text(&key, &text).map_err(de::Error::custom)?;
        }
        Ok(patch)
    }
}

/// A table of settings: every key must be a setting, every value within its bound (the error
/// names the key).
impl<'de> Deserialize<'de> for SettingsPatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PatchVisitor)
    }
}

/// The defaults with a table of settings over them.
impl<'de> Deserialize<'de> for Settings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let patch = SettingsPatch::deserialize(deserializer)?;
        let mut settings = Settings::default();
        patch.apply(&mut settings);
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: SettingsPatch,
    }

    #[test]
    fn flags_round_trip_through_the_command_line() {
        let mut patch = SettingsPatch::default();
        patch.set_text("tick_ms", "7").unwrap();
        patch.set_text("pre_vote", "false").unwrap();
        patch.set_text("cpus", "\"0-1\"").unwrap();
        let mut args = vec!["x".to_string()];
        args.extend(patch.flags());
        let parsed = Cli::try_parse_from(&args).unwrap().settings;
        assert_eq!(parsed, patch);
        let switch = Cli::try_parse_from(["x", "--strict-recovery"]).unwrap();
        assert_eq!(switch.settings.strict_recovery, Some(true));
    }

    #[test]
    fn a_string_where_a_number_belongs_is_refused_by_name() {
        let e = toml::from_str::<SettingsPatch>("tick_ms = \"10\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tick_ms") && e.contains("not a whole number"),
            "{e}"
        );
    }
}
