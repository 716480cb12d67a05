//! The translation inspector (placeholder until implemented).
pub mod page;

/// Recent translations, for the inspector page.
#[derive(Debug, Default)]
pub struct Inspector {}

impl Inspector {
    pub fn new(_secrets: Vec<String>) -> Inspector {
        Inspector {}
    }
}
