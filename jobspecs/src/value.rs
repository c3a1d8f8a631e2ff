//! HCL values, represented as `serde_json::Value`, and the conversions HCL applies
//! implicitly (numbers and bools to strings, numeric strings to numbers).

pub use serde_json::Value;

/// The HCL name of a value's type, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// A number value from a float, kept integral when it is a whole number.
pub fn number(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::from(f as i64)
    } else {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// The string form HCL gives a primitive value; `None` for lists, objects and null.
pub fn to_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A number, also from a numeric string as HCL converts it.
pub fn to_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An integer, also from a numeric string; `None` when the value is fractional or does
/// not fit in 64 bits (never a silently saturated number).
pub fn to_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(whole_i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `f` as an i64 when it is a whole number in range.
fn whole_i64(f: f64) -> Option<i64> {
    // 2^63 is exactly representable; every whole f64 below it fits in an i64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

/// Whether a value is a whole number too large for 64 bits (`99999999999999999999`).
pub fn is_huge_whole(v: &Value) -> bool {
    let f = match v {
        Value::Number(n) if n.as_i64().is_none() && n.as_u64().is_none() => n.as_f64(),
        Value::Number(n) => n.as_u64().map(|u| u as f64),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    f.is_some_and(|f| f.is_finite() && f.fract() == 0.0 && whole_i64(f).is_none())
        || f.is_some_and(f64::is_infinite)
}

/// A bool, also from the strings "true" and "false".
pub fn to_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_convert_like_hcl() {
        assert_eq!(to_str(&Value::from(3)), Some("3".into()));
        assert_eq!(to_str(&Value::from(true)), Some("true".into()));
        assert_eq!(to_i64(&Value::from("42")), Some(42));
        assert_eq!(to_bool(&Value::from("false")), Some(false));
        assert_eq!(number(2.0), Value::from(2));
        assert_eq!(type_name(&Value::Array(vec![])), "list");
    }

    #[test]
    fn huge_whole_numbers_are_not_saturated() {
        assert_eq!(to_i64(&serde_json::json!(1e20)), None);
        assert_eq!(to_i64(&Value::from("99999999999999999999")), None);
        assert_eq!(to_i64(&serde_json::json!(-9.3e18)), None);
        assert_eq!(
            to_i64(&serde_json::json!(1e15)),
            Some(1_000_000_000_000_000)
        );
        assert!(is_huge_whole(&serde_json::json!(1e20)));
        assert!(is_huge_whole(&Value::from(u64::MAX)));
        assert!(is_huge_whole(&Value::from("99999999999999999999")));
        assert!(!is_huge_whole(&Value::from(42)));
        assert!(!is_huge_whole(&serde_json::json!(1.5)));
    }
}
