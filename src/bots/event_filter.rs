//! The event filter files servers name (`middlewares.filter`), loaded once per distinct file and
//! reloadable by `reload_event_filter`. The language itself is [`crate::core::filter`].
//!
//! A filter is applied to every event an endpoint would send, heartbeats included, in that
//! endpoint's post format; the lifecycle handshake is never filtered (go-cqhttp's rules).
//! Reloading keeps the previous filter when the file is broken or gone, and says why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::core::event::V11Event;
use crate::core::filter::EventFilter;
use crate::core::v11::PostFormat;
use crate::sync::RwLockUnpoisoned;

/// A filter file larger than this is refused (filters are written by hand).
const MAX_FILTER_BYTES: u64 = 1 << 20;

/// One filter file and the filter compiled from it.
#[derive(Debug)]
pub struct FilterSlot {
    path: PathBuf,
    current: RwLock<Arc<EventFilter>>,
}

impl PartialEq for FilterSlot {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

fn read(path: &Path) -> Result<EventFilter, String> {
    use std::io::Read;
    let named = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    // Only a regular file, checked before opening: a FIFO would block the open, a device
    // (`/dev/zero`) would never end.
    if !std::fs::metadata(path).map_err(|e| named(&e))?.is_file() {
        return Err(named(&"not a regular file"));
    }
    let file = std::fs::File::open(path).map_err(|e| named(&e))?;
    let mut text = String::new();
    file.take(MAX_FILTER_BYTES + 1).read_to_string(&mut text).map_err(|e| named(&e))?;
    if text.len() as u64 > MAX_FILTER_BYTES {
        return Err(named(&format!("more than a filter may have ({MAX_FILTER_BYTES} bytes)")));
    }
    EventFilter::parse(&text).map_err(|e| named(&e))
}

impl FilterSlot {
    /// Reads and compiles the file; a broken file is an error (the bridge does not start).
    pub fn load(path: &Path) -> Result<FilterSlot, String> {
        Ok(FilterSlot { path: path.to_owned(), current: RwLock::new(Arc::new(read(path)?)) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file again; on failure the previous filter stays and the reason is returned.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = read(&self.path)?;
        *self.current.write_unpoisoned() = Arc::new(fresh);
        Ok(())
    }

    /// Whether an endpoint with this filter sends the event.
    pub fn passes(&self, event: &V11Event, format: PostFormat) -> bool {
        let filter = self.current.read_unpoisoned().clone();
        filter.matches(&event.to_value(format))
    }
}

/// Every filter file the configuration names, for `reload_event_filter`.
#[derive(Debug, Default, Clone)]
pub struct Filters(Vec<Arc<FilterSlot>>);

impl Filters {
    /// The slot for `path`, loading it the first time it is named.
    pub fn slot(&mut self, path: &Path) -> Result<Arc<FilterSlot>, String> {
        if let Some(slot) = self.0.iter().find(|s| s.path == path) {
            return Ok(slot.clone());
        }
        let slot = Arc::new(FilterSlot::load(path)?);
        self.0.push(slot.clone());
        Ok(slot)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// go-cqhttp's `reload_event_filter {file}`: reloads the configured filter named `file`
    /// (as the configuration spells it), or every filter when `file` is empty. Only files the
    /// configuration names are read: a bot cannot make the bridge open other paths.
    pub fn reload(&self, file: &str) -> Result<usize, String> {
        let targets: Vec<&Arc<FilterSlot>> = if file.trim().is_empty() {
            self.0.iter().collect()
        } else {
            self.0.iter().filter(|s| s.path == Path::new(file.trim())).collect()
        };
        if targets.is_empty() {
            return Err(if self.0.is_empty() {
                "no event filter is configured".to_owned()
            } else {
                format!("{file:?} is not an event filter the configuration names")
            });
        }
        let mut errors = Vec::new();
        for slot in &targets {
            match slot.reload() {
                Ok(()) => tracing::info!(path = %slot.path.display(), "event filter reloaded"),
                Err(error) => {
                    tracing::warn!(%error, "event filter not reloaded; the previous one stays");
                    errors.push(error);
                }
            }
        }
        if errors.is_empty() {
            Ok(targets.len())
        } else {
            Err(format!("{}; the previous filter stays in force", errors.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ob-filter-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("filter.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn event(user_id: i64) -> V11Event {
        let body = json!({"post_type": "message", "message_type": "private", "user_id": user_id, "message": "x"});
        let serde_json::Value::Object(body) = body else { unreachable!() };
        V11Event::new(10001, body)
    }

    #[test]
    fn reload_swaps_a_good_file_and_keeps_the_old_filter_on_a_broken_one() {
        let path = temp_file("reload", r#"{"user_id": 1}"#);
        let mut filters = Filters::default();
        let slot = filters.slot(&path).unwrap();
        assert!(Arc::ptr_eq(&slot, &filters.slot(&path).unwrap()), "one slot per file");
        assert!(slot.passes(&event(1), PostFormat::String));
        assert!(!slot.passes(&event(2), PostFormat::String));

        std::fs::write(&path, r#"{"user_id": 2}"#).unwrap();
        assert_eq!(filters.reload(path.to_str().unwrap()), Ok(1));
        assert!(slot.passes(&event(2), PostFormat::String));

        std::fs::write(&path, r#"{"user_id": {".regex": "("}}"#).unwrap();
        let error = filters.reload("").unwrap_err();
        assert!(error.contains("bad regular expression") && error.contains("previous filter stays"), "{error}");
        assert!(slot.passes(&event(2), PostFormat::String), "the previous filter is still in force");

        assert!(filters.reload("/etc/passwd").unwrap_err().contains("not an event filter the configuration names"));
        assert!(Filters::default().reload("").unwrap_err().contains("no event filter"));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_broken_or_missing_file_does_not_load() {
        let path = temp_file("broken", "{");
        assert!(FilterSlot::load(&path).unwrap_err().contains("not JSON"));
        assert!(FilterSlot::load(Path::new("/nonexistent/filter.json")).is_err());
        assert!(FilterSlot::load(Path::new("/dev/zero")).unwrap_err().contains("not a regular file"));
        assert!(FilterSlot::load(path.parent().unwrap()).unwrap_err().contains("not a regular file"));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
