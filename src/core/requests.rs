//! Friend and group requests: a backend's request event becomes a v11 request whose `flag`
//! carries what the backend needs to answer it, and `set_friend_add_request` /
//! `set_group_add_request` unpack that flag into the backend's answering action.
//!
//! Which events, fields and actions a backend uses is its profile's `[requests.<detail_type>]`
//! table. The flag is `ob:` + base64url of a JSON array `[detail_type, field values…]`: opaque to
//! the bot, as v11 flags are, and it keeps each value's JSON type (Walle-Q's `request_id` is an
//! integer). A flag that is not one of these (a backend that gives its own, under the generic
//! profile) goes to the row's plain v12 action instead.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::action::{lenient_bool, required_str, ActionContext, ActionError};
use super::ids::IdStore;
use super::mapping::Kind;
use super::message::value_as_text;
use super::scan::{scan_json, ScanLimits};
use super::segment::lenient_i64;
use super::{Translator, V12Caller};

const FLAG_PREFIX: &str = "ob:";
/// What a flag may hold: a detail type and a few field values (real ones hold two to four).
const FLAG_LIMITS: ScanLimits = ScanLimits { max_values: 256, max_depth: 8 };

/// The v11 flag for a request event: its detail_type and the listed field values.
pub fn pack_flag(detail_type: &str, values: Vec<Value>) -> String {
    let mut all = Vec::with_capacity(values.len() + 1);
    all.push(Value::String(detail_type.to_owned()));
    all.extend(values);
    format!("{FLAG_PREFIX}{}", URL_SAFE_NO_PAD.encode(Value::Array(all).to_string()))
}

/// A flag made by [`pack_flag`], read back.
pub fn unpack_flag(flag: &str) -> Option<(String, Vec<Value>)> {
    let bytes = URL_SAFE_NO_PAD.decode(flag.strip_prefix(FLAG_PREFIX)?).ok()?;
    // A flag comes back from the bot: what it holds is pre-scanned before it is decoded.
    scan_json(&bytes, FLAG_LIMITS).ok()?;
    let Value::Array(mut all) = serde_json::from_slice(&bytes).ok()? else { return None };
    if all.is_empty() {
        return None;
    }
    let Value::String(detail) = all.remove(0) else { return None };
    Some((detail, all))
}

impl<S: IdStore> Translator<S> {
    /// `set_friend_add_request` / `set_group_add_request`: the backend's answering action with
    /// the flag's fields, `approve` (default true, as go-cqhttp) and the row's other params.
    pub(super) async fn answer_request<C: V12Caller>(
        &self,
        name: &str,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let flag = required_str(params, "flag")?;
        let Some((detail, values)) = unpack_flag(&flag) else {
            return match ctx.maps.actions.get(name).and_then(|r| r.v12.as_ref()) {
                Some(_) => self.run_rename(name, ctx, caller, params).await,
                None => Err(ActionError::BadParam {
                    param: "flag".into(),
                    reason: "is not a flag from a request event this bridge reported".into(),
                }),
            };
        };
        let Some(row) = ctx.maps.requests.get(&detail) else {
            return Err(ActionError::BadParam {
                param: "flag".into(),
                reason: format!(
                    "names a `{detail}` request, which the {} profile does not answer",
                    ctx.maps.profile.name
                ),
            });
        };
        let approve = params.get("approve").filter(|v| !v.is_null()).map(|v| lenient_bool(v).unwrap_or(true));
        let mut action = row.answer.as_str();
        if approve == Some(false) && !row.answer_params.contains_key("approve") {
            // The answer can only accept: reject through the backend's own action, or refuse.
            action = row.reject.as_deref().ok_or_else(|| ActionError::Unsupported {
                action: name.to_owned(),
                profile: ctx.maps.profile.name.clone(),
                implementation: ctx.backend.implementation.clone(),
                reason: format!("`{}` can only accept a `{detail}` request; rejecting is not possible", row.answer),
            })?;
        }
        let mut p = Map::new();
        for (field, value) in row.flag.iter().zip(values) {
            p.insert(field.clone(), value);
        }
        for (v11, spec) in &row.answer_params {
            let given = params.get(v11).filter(|v| !v.is_null());
            let given = match (given, v11.as_str()) {
                (None, "approve") => Some(Value::Bool(true)),
                (g, _) => g.cloned(),
            };
            let Some(value) = given else { continue };
            let bad =
                |what: &str| ActionError::BadParam { param: v11.clone(), reason: format!("{value} is not {what}") };
            let converted = match spec.kind {
                Kind::Bool => Value::Bool(lenient_bool(&value).ok_or_else(|| bad("a boolean"))?),
                Kind::Int => lenient_i64(&value).ok_or_else(|| bad("an integer"))?.into(),
                Kind::Id => Value::String(self.ids.to_v12(lenient_i64(&value).ok_or_else(|| bad("an id"))?).await?),
                _ => Value::String(value_as_text(&value).unwrap_or_default()),
            };
            p.insert(spec.name.clone(), converted);
        }
        for (k, v) in &row.answer_defaults {
            p.entry(k.clone()).or_insert_with(|| v.clone());
        }
        self.call(ctx, caller, action, p).await?;
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn flags_carry_the_request_and_keep_value_types() {
        let flag = pack_flag("join_group", vec![json!(42), json!("u1"), json!("g|1")]);
        assert!(flag.starts_with("ob:") && !flag.contains('|'));
        assert_eq!(unpack_flag(&flag), Some(("join_group".into(), vec![json!(42), json!("u1"), json!("g|1")])));
        assert_eq!(unpack_flag("12345"), None, "a backend's own flag");
        assert_eq!(unpack_flag("ob:!!"), None);
        assert_eq!(unpack_flag(&format!("ob:{}", URL_SAFE_NO_PAD.encode("[1]"))), None);
        let costly = format!("[\"join_group\",{}0]", "0,".repeat(300));
        assert_eq!(unpack_flag(&format!("ob:{}", URL_SAFE_NO_PAD.encode(costly))), None, "too many values");
    }
}
