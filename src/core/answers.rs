//! Ids inside the backend's answers, beyond the top-level fields a table row renames: nested ids
//! (`files.*.uploader`, listed in a row's `response.ids`) and message ids (`:message` fields),
//! so a bot can use them in later calls. Everything around them is kept as the backend gave it.

use serde_json::{Map, Value};

use super::action::{ActionContext, ActionError};
use super::ids::IdStore;
use super::segment::{lenient_i64, Scope};
use super::v12::id_string;
use super::Translator;

/// The values a dotted path names (`*`: every item of a list); missing steps name nothing.
fn leaves<'v>(value: &'v mut Value, path: &[&str], out: &mut Vec<&'v mut Value>) {
    let Some((first, rest)) = path.split_first() else {
        out.push(value);
        return;
    };
    match (value, *first) {
        (Value::Array(items), "*") => items.iter_mut().for_each(|item| leaves(item, rest, out)),
        (Value::Object(m), key) => {
            if let Some(v) = m.get_mut(key) {
                leaves(v, rest, out);
            }
        }
        _ => {}
    }
}

impl<S: IdStore> Translator<S> {
    /// Every id at `path` inside an answer object, v12 string → v11 integer.
    pub(super) async fn nested_ids_to_v11(&self, obj: &mut Map<String, Value>, path: &str) -> Result<(), ActionError> {
        let steps: Vec<&str> = path.split('.').collect();
        let Some((first, rest)) = steps.split_first() else { return Ok(()) };
        let Some(root) = obj.get_mut(*first) else { return Ok(()) };
        let mut found = Vec::new();
        leaves(root, rest, &mut found);
        for leaf in found {
            if let Some(id) = id_string(leaf).filter(|id| !id.is_empty()) {
                *leaf = self.ids.to_v11(&id).await?.into();
            }
        }
        Ok(())
    }

    /// A v12 message id in an answer → the v11 message_id, the message remembered in the chat the
    /// params name, routed as `send_msg` routes (`message_type`, else a `user_id`, else the
    /// `group_id`), as sent by `sender` (the bot when the answer names none: what it sent itself).
    pub(super) async fn answer_message_id(
        &self,
        ctx: ActionContext<'_>,
        params: &Map<String, Value>,
        sender: Option<&str>,
        message_id: &str,
    ) -> Result<Value, ActionError> {
        let nonzero = |key: &str| params.get(key).and_then(lenient_i64).filter(|n| *n != 0);
        let group = match params.get("message_type").and_then(Value::as_str) {
            Some("private") => None,
            Some("group") => nonzero("group_id"),
            _ if nonzero("user_id").is_some() => None,
            _ => nonzero("group_id"),
        };
        let group = match group {
            Some(n) => Some(self.ids.to_v12(n).await?),
            None => None,
        };
        let scope = Scope {
            account: ctx.account,
            detail_type: if group.is_some() { "group" } else { "private" },
            group_id: group.as_deref(),
            user_id: Some(sender.unwrap_or(&ctx.account.self_id.user_id)),
            maps: ctx.maps,
        };
        Ok(self.ids.message_to_v11(&scope.record(message_id)).await?.into())
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use serde_json::json;

    use crate::core::testing::translator;

    #[test]
    fn nested_ids_are_found_through_lists_and_objects_and_nothing_else_changes() {
        let t = translator();
        let mut answer = json!({
            "current_talkative": {"user_id": "u-a", "nickname": "A"},
            "talkative_list": [{"user_id": "20002", "description": "x"}, {"user_id": 30003}, {"nickname": "no id"}],
            "group_id": "g-1",
        });
        let obj = answer.as_object_mut().unwrap();
        for path in ["current_talkative.user_id", "talkative_list.*.user_id", "missing.*.user_id", "group_id.x"] {
            block_on(t.nested_ids_to_v11(obj, path)).unwrap();
        }
        let a = block_on(t.ids.to_v11("u-a")).unwrap();
        assert_eq!(
            answer,
            json!({
                "current_talkative": {"user_id": a, "nickname": "A"},
                "talkative_list": [{"user_id": 20002, "description": "x"}, {"user_id": 30003}, {"nickname": "no id"}],
                "group_id": "g-1",
            })
        );
        assert_eq!(block_on(t.ids.to_v12(a)).unwrap(), "u-a", "usable in a later call");
    }
}
