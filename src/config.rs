//! The configuration file: every setting of `mall` in one TOML file (`--config FILE` or
//! `MALL_CONFIG`), under the names of [`SETTINGS`]. Environment variables and flags go over it:
//! a setting the file gives becomes its environment variable's value unless that is already set,
//! before the command line is read, so that flags > environment > file > defaults, and every
//! value is checked by the one parser that checks flags. A key that is no setting, or a value of
//! the wrong kind, stops `mall` with the key and why. `mall config check` validates a file and
//! prints the effective settings, secrets hidden.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// What a setting holds in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// A whole number, 0 or more.
    Number,
    /// A list of texts (joined with the delimiter its flag takes).
    List(char),
    /// A table of whole numbers, `name = N`, as `name=N` items.
    Table,
}

/// One setting: its name in the file, its environment variable, what it holds, and whether it
/// is a secret (never printed).
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub key: &'static str,
    pub env: &'static str,
    pub kind: Kind,
    pub secret: bool,
}

const fn s(key: &'static str, env: &'static str, kind: Kind, secret: bool) -> Setting {
    Setting { key, env, kind, secret }
}

/// Every setting.
pub const SETTINGS: &[Setting] = &[
    s("store", "MALL_STORE", Kind::Text, false),
    s("data_dir", "MALL_DATA_DIR", Kind::Text, false),
    s("database_url", "DATABASE_URL", Kind::Text, true),
    s("pg_writers", "MALL_PG_WRITERS", Kind::Number, false),
    s("bind", "MALL_BIND", Kind::Text, false),
    s("workers", "MALL_WORKERS", Kind::Number, false),
    s("snapshot_dir", "MALL_SNAPSHOT_DIR", Kind::Text, false),
    s("body_timeout", "MALL_BODY_TIMEOUT", Kind::Number, false),
    s("max_resident", "MALL_MAX_RESIDENT", Kind::Number, false),
    s("task_concurrency", "MALL_TASK_CONCURRENCY", Kind::Number, false),
    s("score_weights", "MALL_SCORE_WEIGHTS", Kind::List(';'), false),
    s("fetch_allow", "MALL_FETCH_ALLOW", Kind::List(','), false),
    s("server", "MALL_SERVER", Kind::Text, false),
    s("tokens.admin", "MALL_ADMIN_TOKEN", Kind::Text, true),
    s("tokens.ingest", "MALL_INGEST_TOKEN", Kind::Text, true),
    s("tokens.shopper", "MALL_SHOPPER_TOKEN", Kind::Text, true),
    s("llm.backend", "MALL_LLM", Kind::Text, false),
    s("llm.url", "MALL_LLM_URL", Kind::Text, false),
    s("llm.model", "MALL_LLM_MODEL", Kind::Text, false),
    s("llm.embedding_model", "MALL_LLM_EMBEDDING_MODEL", Kind::Text, false),
    s("llm.api_key", "MALL_LLM_API_KEY", Kind::Text, true),
    s("llm.timeout", "MALL_LLM_TIMEOUT", Kind::Number, false),
    s("llm.retries", "MALL_LLM_RETRIES", Kind::Number, false),
    s("budget.generations_per_hour", "MALL_GENERATIONS_PER_HOUR", Kind::Number, false),
    s("budget.generations_per_product", "MALL_GENERATIONS_PER_PRODUCT", Kind::Number, false),
    s("budget.search_embeddings_per_hour", "MALL_SEARCH_EMBEDDINGS_PER_HOUR", Kind::Number, false),
    s("budget.retry_backoff", "MALL_RETRY_BACKOFF", Kind::Number, false),
    s("budget.max_backoff", "MALL_MAX_BACKOFF", Kind::Number, false),
    s("limits.ingest_rate", "MALL_INGEST_RATE", Kind::Number, false),
    s("limits.ingest_burst", "MALL_INGEST_BURST", Kind::Number, false),
    s("limits.read_rate", "MALL_READ_RATE", Kind::Number, false),
    s("limits.read_burst", "MALL_READ_BURST", Kind::Number, false),
    s("jobs", "MALL_JOBS", Kind::Table, false),
    s("webhooks.health", "MALL_HEALTH_WEBHOOK", Kind::Text, false),
    s("webhooks.social", "MALL_SOCIAL_WEBHOOK", Kind::Text, false),
    s("social.ahead", "MALL_SOCIAL_AHEAD", Kind::Number, false),
    s("log.level", "MALL_LOG", Kind::Text, false),
    s("log.format", "MALL_LOG_FORMAT", Kind::Text, false),
];

/// The value of one setting as its environment variable takes it.
fn value(setting: &Setting, v: &toml::Value) -> Result<String, String> {
    let kind = match setting.kind {
        Kind::Text => "text",
        Kind::Number => "a whole number, 0 or more",
        Kind::List(_) => "a list of texts",
        Kind::Table => "a table of names and whole numbers (seconds)",
    };
    let wrong = || format!("{}: expected {kind}, found {v}", setting.key);
    match (setting.kind, v) {
        (Kind::Text, toml::Value::String(s)) => Ok(s.clone()),
        (Kind::Number, toml::Value::Integer(n)) if *n >= 0 => Ok(n.to_string()),
        (Kind::List(sep), toml::Value::Array(items)) => {
            let texts: Option<Vec<&str>> = items.iter().map(toml::Value::as_str).collect();
            Ok(texts.ok_or_else(wrong)?.join(&sep.to_string()))
        }
        (Kind::Table, toml::Value::Table(t)) => {
            let mut out = Vec::new();
            for (name, n) in t {
                match n.as_integer().filter(|n| *n >= 0) {
                    Some(n) => out.push(format!("{name}={n}")),
                    None => {
                        return Err(format!(
                            "{}.{name}: expected a whole number of seconds (0: off), found {n}",
                            setting.key
                        ));
                    }
                }
            }
            Ok(out.join(","))
        }
        _ => Err(wrong()),
    }
}

/// Reads a configuration file: each setting it gives, with the value its environment variable
/// takes. Errors name the file and the key.
pub fn load(path: &Path) -> Result<Vec<(Setting, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("config {}: {e}", path.display()))?;
    let table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| format!("config {}: not TOML: {}", path.display(), e.message()))?;
    let mut found = Vec::new();
    let mut walk: Vec<(String, &toml::Value)> = table.iter().map(|(k, v)| (k.clone(), v)).collect();
    while let Some((key, v)) = walk.pop() {
        if let Some(setting) = SETTINGS.iter().find(|s| s.key == key) {
            found.push((*setting, value(setting, v).map_err(|e| format!("config {}: {e}", path.display()))?));
            continue;
        }
        match v {
            toml::Value::Table(t) if SETTINGS.iter().any(|s| s.key.starts_with(&format!("{key}."))) => {
                walk.extend(t.iter().map(|(k, v)| (format!("{key}.{k}"), v)));
            }
            _ => {
                return Err(format!(
                    "config {}: {key}: not a setting (see `mall config check --help`)",
                    path.display()
                ));
            }
        }
    }
    found.sort_by_key(|(s, _)| s.key);
    Ok(found)
}

/// The configuration file named by `--config FILE` (or `--config=FILE`) in `args`, or by
/// `MALL_CONFIG`.
pub fn path_in(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("MALL_CONFIG").filter(|p| !p.is_empty()).map(PathBuf::from)
}

/// Where an effective setting comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Environment,
    File,
    Default,
}

/// Loads the file and sets, for each setting it gives, the environment variable that is not set
/// already; answers what came from where. Call before any thread starts.
pub fn apply(path: &Path) -> Result<BTreeMap<&'static str, Source>, String> {
    let mut sources = BTreeMap::new();
    for s in SETTINGS {
        if std::env::var_os(s.env).is_some() {
            sources.insert(s.key, Source::Environment);
        }
    }
    for (setting, v) in load(path)? {
        if std::env::var_os(setting.env).is_none() {
            // SAFETY: called from `main` before the runtime or any other thread is started.
            unsafe { std::env::set_var(setting.env, v) };
            sources.insert(setting.key, Source::File);
        }
    }
    Ok(sources)
}

/// Where each setting comes from when there is no file: the environment or the default.
pub fn apply_none() -> BTreeMap<&'static str, Source> {
    SETTINGS.iter().filter(|s| std::env::var_os(s.env).is_some()).map(|s| (s.key, Source::Environment)).collect()
}

/// The effective settings as `key = value  (source)` lines, secrets hidden; defaults from the
/// command line's own definitions.
pub fn effective(sources: &BTreeMap<&'static str, Source>) -> Vec<String> {
    use clap::CommandFactory;
    let cli = crate::cli::Cli::command();
    let args: Vec<&clap::Arg> = cli
        .get_arguments()
        .chain(cli.get_subcommands().filter(|c| c.get_name() == "serve").flat_map(|c| c.get_arguments()))
        .collect();
    SETTINGS
        .iter()
        .map(|s| {
            let source = sources.get(s.key).copied().unwrap_or(Source::Default);
            let shown = match source {
                Source::Default => {
                    let default = args
                        .iter()
                        .find(|a| a.get_env() == Some(OsStr::new(s.env)))
                        .map(|a| {
                            a.get_default_values().iter().map(|v| v.to_string_lossy()).collect::<Vec<_>>().join(",")
                        })
                        .filter(|d| !d.is_empty());
                    default.unwrap_or_else(|| "(not set)".into())
                }
                _ if s.secret => "(hidden)".into(),
                _ => std::env::var(s.env).unwrap_or_default(),
            };
            let from = match source {
                Source::Environment => format!("  # {}", s.env),
                Source::File => "  # the file".into(),
                Source::Default => "  # default".into(),
            };
            format!("{} = {shown}{from}", s.key)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mall.toml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn every_setting_is_read_under_its_key_as_its_variable_takes_it() {
        let (_d, p) = file(
            "bind = \"0.0.0.0:9000\"\nfetch_allow = [\"10.0.0.1\", \"10.0.0.2\"]\n[tokens]\nadmin = \"s3cret\"\n\
             [llm]\nbackend = \"openai\"\nretries = 3\n[jobs]\nhealth_check = 600\nplugin_hooks = 0\n",
        );
        let got: BTreeMap<&str, String> = load(&p).unwrap().into_iter().map(|(s, v)| (s.env, v)).collect();
        assert_eq!(got["MALL_BIND"], "0.0.0.0:9000");
        assert_eq!(got["MALL_FETCH_ALLOW"], "10.0.0.1,10.0.0.2");
        assert_eq!(got["MALL_ADMIN_TOKEN"], "s3cret");
        assert_eq!(got["MALL_LLM"], "openai");
        assert_eq!(got["MALL_LLM_RETRIES"], "3");
        assert_eq!(got["MALL_JOBS"], "health_check=600,plugin_hooks=0");
    }

    #[test]
    fn a_key_that_is_no_setting_or_a_value_of_the_wrong_kind_is_named() {
        for (text, said) in [
            ("bnd = \"x\"", "bnd: not a setting"),
            ("[llm]\nmodle = \"m\"", "llm.modle: not a setting"),
            ("workers = \"four\"", "workers: expected a whole number"),
            ("workers = -1", "workers: expected a whole number"),
            ("[jobs]\nhealth_check = \"hourly\"", "jobs.health_check: expected a whole number"),
            ("fetch_allow = [1]", "fetch_allow: expected a list"),
            ("bind = ", "not TOML"),
        ] {
            let (_d, p) = file(text);
            let e = load(&p).unwrap_err();
            assert!(e.contains(said), "{text}: {e}");
        }
    }

    #[test]
    fn the_file_is_named_by_the_flag_in_either_spelling() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(path_in(&args(&["mall", "--config", "a.toml", "serve"])), Some(PathBuf::from("a.toml")));
        assert_eq!(path_in(&args(&["mall", "serve", "--config=b.toml"])), Some(PathBuf::from("b.toml")));
    }
}
