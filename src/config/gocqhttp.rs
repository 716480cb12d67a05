//! go-cqhttp's own `config.yml`, read directly so that a migrating user changes nothing but the
//! backend.
//!
//! The file is read as go-cqhttp reads it: `${VAR}` / `${VAR:default}` placeholders are expanded
//! first (the same pattern, and a default only when the variable is empty), then the YAML is
//! parsed with anchors and `<<` merge keys (go-cqhttp's template writes
//! `middlewares: <<: *default`). Every key is then sorted into one of three kinds:
//!
//! - **honoured**: carried into the same [`FileConfig`] the TOML file produces, so one resolution
//!   path serves both formats;
//! - **not applicable**: keys whose job the backend does now (`account.*`, media fetching
//!   switches, the database): reported once, with why;
//! - **unknown**: keys go-cqhttp itself ignored; reported once, and ignored too.
//!
//! The bridge's own sections (`backend`, `bridge`, `media`) may be added to the same file in the
//! TOML file's vocabulary; they are read strictly (an unknown key there is an error).

use serde_json::{Map, Value};

use super::FileConfig;

/// A key of the file that the bridge does not act on, and why. Reported once at start (and by
/// `--check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// The keys, as dotted paths (`account.uin`, `servers[2].lambda`).
    pub keys: Vec<String>,
    pub why: String,
}

/// Reads go-cqhttp's YAML. `env` looks up environment variables (the process environment in
/// production, a table in tests).
pub fn read(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<(FileConfig, Vec<Ignored>), String> {
    let expanded = expand(text, env);
    let root: Value = if expanded.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        serde_saphyr::from_str(&expanded).map_err(|e| e.to_string())?
    };
    let Value::Object(root) = root else {
        return Err("the file is not a YAML mapping".into());
    };
    let mut report = Report::default();
    let native = translate(root, &mut report)?;
    let mut file: FileConfig = serde_json::from_value(Value::Object(native)).map_err(|e| e.to_string())?;
    file.log_level = report.log_level.take();
    Ok((file, report.finish()))
}

/// go-cqhttp's placeholder expansion: `${NAME}` or `${NAME:default}` where NAME starts with a
/// letter or `_`; the default is used when the variable is unset or empty. A `$` anywhere else
/// stays as it is (passwords and tokens may contain one).
pub fn expand(text: &str, env: impl Fn(&str) -> Option<String>) -> String {
    static PLACEHOLDER: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re =
        PLACEHOLDER.get_or_init(|| regex::Regex::new(r"\$\{([a-zA-Z_]+[a-zA-Z0-9_:/.]*)\}").expect("valid pattern"));
    re.replace_all(text, |caps: &regex::Captures| {
        let inner = &caps[1];
        let (name, default) = match inner.split_once(':') {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let value = env(name).unwrap_or_default();
        match default {
            Some(default) if value.is_empty() => default.to_owned(),
            _ => value,
        }
    })
    .into_owned()
}

#[derive(Default)]
struct Report {
    by_reason: Vec<Ignored>,
    log_level: Option<String>,
}

impl Report {
    fn ignore(&mut self, key: String, why: &str) {
        match self.by_reason.iter_mut().find(|i| i.why == why) {
            Some(entry) => entry.keys.push(key),
            None => self.by_reason.push(Ignored { keys: vec![key], why: why.to_owned() }),
        }
    }

    fn finish(self) -> Vec<Ignored> {
        self.by_reason
    }
}

const ACCOUNT: &str = "the backend logs in to QQ now; the bridge has no account of its own";
const DATABASE: &str =
    "the bridge keeps message ids in its own store (<data-dir>/bridge.redb, or memory with --ephemeral); set it with --data-dir or `bridge: {data-dir: …}`";
const SENDING: &str = "sending and fetching media is the backend's job now";
const LOG_FILES: &str = "the bridge logs to stderr only; rotate and keep logs with the service manager";
const UNKNOWN: &str = "not a go-cqhttp key (go-cqhttp ignored it too)";
const LAMBDA: &str = "serverless (lambda) servers are not supported; use http or ws";
const PPROF: &str = "go's profiler does not apply to the bridge";
const V12_SERVER: &str = "only OneBot 11 servers are served toward bots (the bridge is a v12 client itself)";

fn translate(root: Map<String, Value>, report: &mut Report) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (key, value) in root {
        match key.as_str() {
            "account" => ignore_all(&key, &value, ACCOUNT, report),
            "database" => ignore_all(&key, &value, DATABASE, report),
            "heartbeat" => {
                let heartbeat = keep_known(&key, value, &["interval", "disabled"], report)?;
                out.insert(key, Value::Object(heartbeat));
            }
            "message" => {
                let mut message = Map::new();
                for (k, v) in object(&key, value)? {
                    match k.as_str() {
                        "post-format" | "report-self-message" | "remove-reply-at" | "extra-reply-data" => {
                            message.insert(k, v);
                        }
                        "ignore-invalid-cqcode" => {
                            if v.as_bool() == Some(true) {
                                report.ignore(
                                    format!("message.{k}"),
                                    "a CQ code the bridge cannot read is always sent as literal text (go-cqhttp's `false`)",
                                );
                            }
                        }
                        "force-fragment" | "fix-url" | "proxy-rewrite" | "skip-mime-scan" | "convert-webp-image"
                        | "http-timeout" => report.ignore(format!("message.{k}"), SENDING),
                        _ => report.ignore(format!("message.{k}"), UNKNOWN),
                    }
                }
                out.insert(key, Value::Object(message));
            }
            "output" => {
                for (k, v) in object(&key, value)? {
                    match k.as_str() {
                        "log-level" => {
                            if let Some(level) = v.as_str().map(str::trim).filter(|s| !s.is_empty()) {
                                report.log_level = Some(log_level(level)?);
                            }
                        }
                        "debug" if v.as_bool() == Some(true) => report.log_level = Some("debug".into()),
                        "debug" => {}
                        "log-aging" | "log-force-new" | "log-colorful" => {
                            report.ignore(format!("output.{k}"), LOG_FILES)
                        }
                        _ => report.ignore(format!("output.{k}"), UNKNOWN),
                    }
                }
            }
            "default-middlewares" => {
                out.insert(key.clone(), middlewares(&key, value, report)?);
            }
            "servers" => {
                let Value::Array(list) = value else {
                    if value.is_null() {
                        continue;
                    }
                    return Err("`servers` must be a list".into());
                };
                let mut servers = Vec::new();
                for (i, entry) in list.into_iter().enumerate() {
                    if let Some(server) = server(i, entry, report)? {
                        servers.push(server);
                    }
                }
                out.insert(key, Value::Array(servers));
            }
            // The bridge's own sections, in the TOML file's vocabulary (read strictly).
            "backend" | "bridge" | "media" => {
                out.insert(key, value);
            }
            _ => report.ignore(key, UNKNOWN),
        }
    }
    Ok(out)
}

/// The keys of mapping `value` (at `path`) that are in `known`; every other key is reported as
/// unknown.
fn keep_known(path: &str, value: Value, known: &[&str], report: &mut Report) -> Result<Map<String, Value>, String> {
    let mut kept = Map::new();
    for (k, v) in object(path, value)? {
        if known.contains(&k.as_str()) {
            kept.insert(k, v);
        } else {
            report.ignore(format!("{path}.{k}"), UNKNOWN);
        }
    }
    Ok(kept)
}

fn object(key: &str, value: Value) -> Result<Map<String, Value>, String> {
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        other => Err(format!("`{key}` must be a mapping, not {other}")),
    }
}

/// Reports every leaf under `value` (or `key` itself when it is one) as ignored for `why`.
fn ignore_all(key: &str, value: &Value, why: &str, report: &mut Report) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                ignore_all(&format!("{key}.{k}"), v, why, report);
            }
        }
        _ => report.ignore(key.to_owned(), why),
    }
}

fn log_level(level: &str) -> Result<String, String> {
    let lower = level.to_ascii_lowercase();
    match lower.as_str() {
        "trace" | "debug" | "info" | "warn" | "error" => Ok(lower),
        "warning" => Ok("warn".into()),
        "fatal" | "panic" => Ok("error".into()),
        _ => Err(format!("output.log-level {level:?} is not one of trace, debug, info, warn, error")),
    }
}

/// A `middlewares` mapping: `access-token`, `filter` (a path; empty is none) and `rate-limit`.
fn middlewares(path: &str, value: Value, report: &mut Report) -> Result<Value, String> {
    let mut out = Map::new();
    for (k, v) in object(path, value)? {
        match k.as_str() {
            "access-token" => {
                out.insert(k, v);
            }
            "filter" => {
                if v.as_str().is_some_and(|s| !s.trim().is_empty()) {
                    out.insert(k, v);
                }
            }
            "rate-limit" => {
                let limit = keep_known(&format!("{path}.rate-limit"), v, &["enabled", "frequency", "bucket"], report)?;
                out.insert(k, Value::Object(limit));
            }
            _ => report.ignore(format!("{path}.{k}"), UNKNOWN),
        }
    }
    Ok(Value::Object(out))
}

/// One `servers` entry, a single-key mapping naming its kind. `None` when it does not apply.
fn server(i: usize, entry: Value, report: &mut Report) -> Result<Option<Value>, String> {
    let Value::Object(entry) = entry else {
        return Err(format!("servers[{i}] must be a mapping such as `- http: {{…}}`"));
    };
    let mut kept = None;
    for (kind, body) in entry {
        let at = format!("servers[{i}].{kind}");
        let body = object(&at, body)?;
        let translated = match kind.as_str() {
            "http" => http_server(&at, body, report)?,
            "ws" => ws_server(&at, body, report)?,
            "ws-reverse" => ws_reverse(&at, body, report)?,
            "lambda" => {
                report.ignore(at, LAMBDA);
                continue;
            }
            "pprof" => {
                report.ignore(at, PPROF);
                continue;
            }
            _ => {
                report.ignore(at, UNKNOWN);
                continue;
            }
        };
        let Some(translated) = translated else { continue };
        if kept.is_some() {
            return Err(format!("servers[{i}] names two servers; give each its own `- {kind}:` entry"));
        }
        let mut one = Map::new();
        one.insert(kind, Value::Object(translated));
        kept = Some(Value::Object(one));
    }
    Ok(kept)
}

/// go-cqhttp's legacy `host` + `port` become `address`.
fn address(at: &str, body: &mut Map<String, Value>, report: &mut Report) {
    let host = body.remove("host");
    let port = body.remove("port");
    let has_address = body.get("address").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    if has_address {
        if host.is_some() || port.is_some() {
            report.ignore(format!("{at}.host/port"), "`address` is set, and go-cqhttp used it first");
        }
        return;
    }
    if host.is_some() || port.is_some() {
        let host = host.as_ref().and_then(Value::as_str).unwrap_or("").to_owned();
        let port = port.map(|p| match p {
            Value::String(s) => s,
            other => other.to_string(),
        });
        let host = if host.is_empty() { "0.0.0.0".to_owned() } else { host };
        body.insert("address".into(), Value::String(format!("{host}:{}", port.unwrap_or_default())));
    }
}

/// A server's `address` may be a URL in go-cqhttp (`tcp://host:port`); unix sockets are not served.
fn plain_address(at: &str, body: &mut Map<String, Value>) -> Result<(), String> {
    if let Some(Value::String(address)) = body.get_mut("address") {
        if let Some((scheme, rest)) = address.split_once("://") {
            if scheme != "tcp" {
                return Err(format!("{at}.address {address:?}: only TCP addresses are served (no {scheme}://)"));
            }
            *address = rest.to_owned();
        }
    }
    Ok(())
}

fn common(at: &str, body: &mut Map<String, Value>, report: &mut Report) -> Result<bool, String> {
    if body.get("disabled").and_then(Value::as_bool) == Some(true) {
        report.ignore(at.to_owned(), "disabled: true");
        return Ok(false);
    }
    body.remove("disabled");
    if let Some(mw) = body.remove("middlewares") {
        let path = format!("{at}.middlewares");
        body.insert("middlewares".into(), middlewares(&path, mw, report)?);
    }
    Ok(true)
}

fn http_server(
    at: &str,
    mut body: Map<String, Value>,
    report: &mut Report,
) -> Result<Option<Map<String, Value>>, String> {
    if !common(at, &mut body, report)? {
        return Ok(None);
    }
    match body.remove("version") {
        None => {}
        Some(v) if v.as_i64() == Some(11) || v.as_str() == Some("11") => {}
        Some(_) => {
            report.ignore(at.to_owned(), V12_SERVER);
            return Ok(None);
        }
    }
    address(at, &mut body, report);
    plain_address(at, &mut body)?;
    let mut out = Map::new();
    for (k, v) in body {
        match k.as_str() {
            "address" | "timeout" | "middlewares" => {
                out.insert(k, v);
            }
            "long-polling" => {
                let lp = keep_known(&format!("{at}.long-polling"), v, &["enabled", "max-queue-size"], report)?;
                out.insert(k, Value::Object(lp));
            }
            "post" => {
                let list = match v {
                    Value::Array(list) => list,
                    Value::Null => Vec::new(),
                    other => return Err(format!("{at}.post must be a list, not {other}")),
                };
                let mut posts = Vec::new();
                for (j, post) in list.into_iter().enumerate() {
                    let known = ["url", "secret", "max-retries", "retries-interval"];
                    let mut kept = keep_known(&format!("{at}.post[{j}]"), post, &known, report)?;
                    // go-cqhttp skips a post entry without a URL.
                    if kept.get("url").and_then(Value::as_str).is_some_and(|u| !u.trim().is_empty()) {
                        if kept.get("secret").and_then(Value::as_str) == Some("") {
                            kept.remove("secret");
                        }
                        posts.push(Value::Object(kept));
                    }
                }
                out.insert(k, Value::Array(posts));
            }
            _ => report.ignore(format!("{at}.{k}"), UNKNOWN),
        }
    }
    Ok(Some(out))
}

fn ws_server(
    at: &str,
    mut body: Map<String, Value>,
    report: &mut Report,
) -> Result<Option<Map<String, Value>>, String> {
    if !common(at, &mut body, report)? {
        return Ok(None);
    }
    address(at, &mut body, report);
    plain_address(at, &mut body)?;
    let out = keep_known(at, Value::Object(body), &["address", "middlewares"], report)?;
    if !out.contains_key("address") {
        return Err(format!("{at} has no `address`"));
    }
    Ok(Some(out))
}

fn ws_reverse(
    at: &str,
    mut body: Map<String, Value>,
    report: &mut Report,
) -> Result<Option<Map<String, Value>>, String> {
    if !common(at, &mut body, report)? {
        return Ok(None);
    }
    let mut out = Map::new();
    for (k, v) in body {
        match k.as_str() {
            // go-cqhttp treats an empty URL as not set.
            "universal" | "api" | "event" => {
                if v.as_str().is_some_and(|s| !s.trim().is_empty()) {
                    out.insert(k, v);
                }
            }
            "reconnect-interval" | "middlewares" => {
                out.insert(k, v);
            }
            _ => report.ignore(format!("{at}.{k}"), UNKNOWN),
        }
    }
    // With `universal` set, go-cqhttp ignores `api` and `event`.
    if out.contains_key("universal") {
        for role in ["api", "event"] {
            if out.remove(role).is_some() {
                report.ignore(format!("{at}.{role}"), "`universal` is set, so go-cqhttp ignored it too");
            }
        }
    }
    // go-cqhttp sent `Authorization: Token …` to reverse-WS bots.
    out.insert("auth-scheme".into(), Value::String("Token".into()));
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn placeholders_expand_as_go_cqhttp_does() {
        let vars = env(&[("TOKEN", "t0k"), ("EMPTY", "")]);
        let cases = [
            ("a: ${TOKEN}", "a: t0k"),
            ("a: ${MISSING}", "a: "),
            ("a: ${MISSING:fallback}", "a: fallback"),
            ("a: ${EMPTY:fallback}", "a: fallback"),
            ("a: ${TOKEN:fallback}", "a: t0k"),
            ("a: ${HOST:127.0.0.1}", "a: 127.0.0.1"),
            ("a: $TOKEN and p@$$w0rd", "a: $TOKEN and p@$$w0rd"),
            ("a: ${1BAD}", "a: ${1BAD}"),
            ("a: ${URL:ws://x/y}", "a: ws://x/y"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &vars), want, "{input}");
        }
    }

    #[test]
    fn anchors_and_merge_keys_reach_every_server() {
        let yaml = r#"
default-middlewares: &default
  access-token: 'shared'
  filter: ''
  rate-limit: {enabled: false, frequency: 1, bucket: 1}
servers:
  - ws:
      address: 0.0.0.0:8080
      middlewares:
        <<: *default
  - http:
      host: 127.0.0.1
      port: 5700
      middlewares:
        <<: *default
        access-token: 'own'
      post:
        - url: ''
        - url: http://127.0.0.1:5701/
          secret: ''
          max-retries: 3
"#;
        let (file, ignored) = read(yaml, |_| None).unwrap();
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(file.default_middlewares.access_token.as_deref(), Some("shared"));
        assert_eq!(file.servers.len(), 2);
        match &file.servers[0] {
            super::super::ServerEntry::Ws(ws) => {
                assert_eq!(ws.address, "0.0.0.0:8080");
                assert_eq!(ws.middlewares.as_ref().unwrap().access_token.as_deref(), Some("shared"));
            }
            other => panic!("{other:?}"),
        }
        match &file.servers[1] {
            super::super::ServerEntry::Http(h) => {
                assert_eq!(h.address, "127.0.0.1:5700");
                assert_eq!(h.middlewares.as_ref().unwrap().access_token.as_deref(), Some("own"));
                assert_eq!(h.post.len(), 1, "the entry without a URL is skipped, as go-cqhttp");
                assert_eq!(h.post[0].secret, None);
                assert_eq!(h.post[0].max_retries, Some(3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_key_that_does_not_apply_is_reported_with_why() {
        let yaml = r#"
account: {uin: 123, password: 'x', relogin: {delay: 3}}
database: {leveldb: {enable: true}}
message: {post-format: array, fix-url: true, ignore-invalid-cqcode: true, what: 1}
output: {log-level: debug, log-aging: 15}
servers:
  - lambda: {type: scf}
  - pprof: {host: 127.0.0.1, port: 7700}
  - http: {version: 12, address: 0.0.0.0:5700}
  - ws: {disabled: true, address: 0.0.0.0:8080}
  - ws-reverse: {universal: ws://a/, api: ws://b/, event: '', reconnect-interval: 3000}
extra: 1
"#;
        let (file, ignored) = read(yaml, |_| None).unwrap();
        let keys = |why: &str| ignored.iter().find(|i| i.why == why).map(|i| i.keys.clone()).unwrap_or_default();
        assert_eq!(keys(ACCOUNT), ["account.uin", "account.password", "account.relogin.delay"]);
        assert_eq!(keys(DATABASE), ["database.leveldb.enable"]);
        assert_eq!(keys(SENDING), ["message.fix-url"]);
        assert_eq!(keys(LOG_FILES), ["output.log-aging"]);
        assert_eq!(keys(UNKNOWN), ["message.what", "extra"]);
        assert_eq!(keys(LAMBDA), ["servers[0].lambda"]);
        assert_eq!(keys(PPROF), ["servers[1].pprof"]);
        assert_eq!(keys(V12_SERVER), ["servers[2].http"]);
        assert_eq!(keys("disabled: true"), ["servers[3].ws"]);
        assert_eq!(keys("`universal` is set, so go-cqhttp ignored it too"), ["servers[4].ws-reverse.api"]);
        assert!(ignored.iter().any(|i| i.keys == ["message.ignore-invalid-cqcode"]));
        assert_eq!(file.log_level.as_deref(), Some("debug"));
        assert_eq!(file.servers.len(), 1, "only the reverse WebSocket applies");
    }

    #[test]
    fn the_bridge_sections_are_read_strictly() {
        let yaml = "backend:\n  ws:\n    - url: ws://127.0.0.1:8844/\n";
        let (file, _) = read(yaml, |_| None).unwrap();
        assert_eq!(file.backend.ws.len(), 1);
        let err = read("backend:\n  wss: []\n", |_| None).unwrap_err();
        assert!(err.contains("wss"), "{err}");
        assert!(read("output: {log-level: loud}\n", |_| None).unwrap_err().contains("log-level"));
        assert!(read("- a\n- b\n", |_| None).is_err());
        assert!(read("servers:\n  - {ws: {address: 'unix:///tmp/s'}}\n", |_| None).unwrap_err().contains("TCP"));
    }
}
