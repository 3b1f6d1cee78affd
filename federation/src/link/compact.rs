//! A compact binary form of a message's EDUs (the `[[edu_type, content], ...]` JSON
//! array), for the presence and short classes, where small messages repeat the same
//! words, user IDs and object shapes.
//!
//! It is JSON's data model written as tagged values, with two tables that both ends
//! keep per connection, direction and class (messages of one class are encoded and
//! decoded in the same order, so the tables stay equal; a new connection starts them
//! afresh): strings (seeded with the EDU vocabulary) and object shapes (the key lists
//! of objects seen before). A string or a shape seen before costs one byte; a user ID
//! on the sending server is written as its localpart. The decoder rebuilds the same
//! `serde_json::Value`, so the receiver's exchange gets exactly the same EDUs.
//!
//! | tag | value |
//! |---|---|
//! | `0x00` `0x01` `0x02` | null, false, true |
//! | `0x03` varint | unsigned integer |
//! | `0x04` varint | negative integer `-1 - n` |
//! | `0x05` 8 bytes | f64, big-endian |
//! | `0x06` varint len, bytes | string (interned if short) |
//! | `0x07` varint | interned string by index |
//! | `0x08` varint n, n values | array |
//! | `0x09` varint n, n × (string, value) | object (its shape interned) |
//! | `0x0a` varint, values | object of an interned shape, by index |
//! | `0x0b` varint len, bytes | `@<localpart>:<sender's server name>` (interned) |
//! | `0x0c`, `0x0d`, `0x0e` + 1, 2, 3 bytes | unsigned integer, big-endian |
//! | `0x10 + n` (n < 16) | array of n values |
//! | `0x20 + n` (n < 32) | the integer n |
//! | `0x40 + i` (i < 32) | object of interned shape i |
//! | `0x60 + n` (n < 31), `0x7f` varint n | a presence EDU of n pushes (below) |
//! | `0x80 + i` (i < 128) | interned string i |
//!
//! **Presence.** The pair `["m.presence", {"push": [update, ...]}]` (the EDU as a
//! message body holds it) is written as its own tag and, per update, a flags byte and
//! the fields the flags announce, in this order: `user_id` (a string as above),
//! `presence` when it is not one of the three words (a string), `last_active_ago`
//! (varint), `status_msg` (a string). Flags: bits 0-1 the presence (`online`,
//! `unavailable`, `offline`, 3 = spelled out), bit 2 `currently_active` present, bit 3
//! its value, bit 4 `last_active_ago` present, bit 5 `status_msg` present. An update
//! with any other key, or a field of another type, sends the whole EDU in the general
//! form. A known user's change of state then costs 3 to 5 bytes: the general form
//! spends about 7 more on the envelope, the keys' shape and integer tags. Decoded, it
//! is the same value.
//!
//! Tables are bounded (strings of at most 64 bytes, 1,024 strings and 16 KiB of them,
//! 256 shapes of at most 16 keys); both ends apply the same bounds, so they agree on
//! what was interned.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};

/// Strings every table starts with: the words of the presence and consent EDUs.
const VOCABULARY: &[&str] = &[
    "m.presence",
    "push",
    "user_id",
    "presence",
    "last_active_ago",
    "currently_active",
    "status_msg",
    "online",
    "unavailable",
    "offline",
    "tidings.presence_invite",
    "tidings.presence_answer",
    "tidings.presence_drop",
    "tidings.presence_subscribe",
    "tidings.presence_reminder",
    "watcher",
    "target",
    "allow",
    "add",
    "remove",
    "replace",
    "pushed",
    "held",
];

const MAX_STRING_LEN: usize = 64;
const MAX_STRINGS: usize = 1024;
const MAX_STRING_BYTES: usize = 16 * 1024;
const MAX_SHAPES: usize = 256;
const MAX_SHAPE_KEYS: usize = 16;
const MAX_DEPTH: usize = 32;

/// One end's tables for one direction and class of a connection.
#[derive(Debug, Default)]
pub struct Table {
    strings: Vec<Box<str>>,
    string_index: HashMap<Box<str>, usize>,
    string_bytes: usize,
    shapes: Vec<Vec<usize>>,
    shape_index: HashMap<Vec<usize>, usize>,
}

impl Table {
    /// A fresh table (the vocabulary only).
    pub fn new() -> Self {
        Self::default()
    }

    fn string(&self, i: usize) -> Option<&str> {
        match VOCABULARY.get(i) {
            Some(s) => Some(s),
            None => self.strings.get(i - VOCABULARY.len()).map(|s| &**s),
        }
    }

    fn find_string(&self, s: &str) -> Option<usize> {
        VOCABULARY.iter().position(|v| *v == s).or_else(|| self.string_index.get(s).map(|i| i + VOCABULARY.len()))
    }

    /// Intern `s` if the bounds allow; its index if it is in the table now.
    fn intern(&mut self, s: &str) -> Option<usize> {
        if s.len() > MAX_STRING_LEN
            || self.strings.len() >= MAX_STRINGS
            || self.string_bytes + s.len() > MAX_STRING_BYTES
            || self.find_string(s).is_some()
        {
            return None;
        }
        self.strings.push(s.into());
        self.string_index.insert(s.into(), self.strings.len() - 1);
        self.string_bytes += s.len();
        Some(self.strings.len() - 1 + VOCABULARY.len())
    }

    fn intern_shape(&mut self, keys: Vec<usize>) {
        if keys.len() <= MAX_SHAPE_KEYS && self.shapes.len() < MAX_SHAPES && !self.shape_index.contains_key(&keys) {
            self.shape_index.insert(keys.clone(), self.shapes.len());
            self.shapes.push(keys);
        }
    }
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    super::frame::put_varint(out, v);
}

/// The presence words of the flags' bits 0-1.
const PRESENCE_WORDS: [&str; 3] = ["online", "unavailable", "offline"];
const HAS_ACTIVE: u8 = 0x04;
const ACTIVE: u8 = 0x08;
const HAS_AGO: u8 = 0x10;
const HAS_STATUS: u8 = 0x20;
/// The first tag of the presence form (`0x60 + n`, `0x7f` followed by n).
const PRESENCE_TAG: u8 = 0x60;
const PRESENCE_TAG_LONG: u8 = 0x7f;

/// The pushes of `value` when it is a presence EDU pair the presence form can write.
fn presence_pushes(value: &Value) -> Option<&Vec<Value>> {
    let [edu_type, content] = value.as_array()?.as_slice() else { return None };
    if edu_type.as_str() != Some("m.presence") {
        return None;
    }
    let content = content.as_object()?;
    let push = content.get("push")?.as_array();
    let fits = |u: &Value| {
        let Some(u) = u.as_object() else { return false };
        u.get("user_id").is_some_and(Value::is_string)
            && u.get("presence").is_some_and(Value::is_string)
            && u.get("last_active_ago").is_none_or(Value::is_u64)
            && u.get("currently_active").is_none_or(Value::is_boolean)
            && u.get("status_msg").is_none_or(Value::is_string)
            && u.keys().all(|k| {
                matches!(k.as_str(), "user_id" | "presence" | "last_active_ago" | "currently_active" | "status_msg")
            })
    };
    push.filter(|p| content.len() == 1 && p.iter().all(fits))
}

/// Write `pushes` in the presence form (they fit: [`presence_pushes`]).
fn encode_presence(pushes: &[Value], origin: &str, table: &mut Table, out: &mut Vec<u8>) {
    if pushes.len() < usize::from(PRESENCE_TAG_LONG - PRESENCE_TAG) {
        out.push(PRESENCE_TAG + pushes.len() as u8);
    } else {
        out.push(PRESENCE_TAG_LONG);
        put_varint(out, pushes.len() as u64);
    }
    for u in pushes {
        let field = |k: &str| u.get(k);
        let presence = field("presence").and_then(Value::as_str).unwrap_or_default();
        let word = PRESENCE_WORDS.iter().position(|w| *w == presence);
        let mut flags = word.map_or(3, |w| w as u8);
        if let Some(active) = field("currently_active").and_then(Value::as_bool) {
            flags |= HAS_ACTIVE | if active { ACTIVE } else { 0 };
        }
        let ago = field("last_active_ago").and_then(Value::as_u64);
        let status = field("status_msg").and_then(Value::as_str);
        flags |= if ago.is_some() { HAS_AGO } else { 0 } | if status.is_some() { HAS_STATUS } else { 0 };
        out.push(flags);
        encode_string(field("user_id").and_then(Value::as_str).unwrap_or_default(), origin, table, out);
        if word.is_none() {
            encode_string(presence, "", table, out);
        }
        if let Some(ago) = ago {
            put_varint(out, ago);
        }
        if let Some(status) = status {
            encode_string(status, "", table, out);
        }
    }
}

/// Encode `value`, sent by `origin` (its users' IDs are written as localparts).
pub fn encode(value: &Value, origin: &str, table: &mut Table, out: &mut Vec<u8>) {
    if let Some(pushes) = presence_pushes(value) {
        return encode_presence(pushes, origin, table, out);
    }
    match value {
        Value::Null => out.push(0x00),
        Value::Bool(b) => out.push(if *b { 0x02 } else { 0x01 }),
        Value::Number(n) => encode_number(n, out),
        Value::String(s) => encode_string(s, origin, table, out),
        Value::Array(items) => {
            if items.len() < 16 {
                out.push(0x10 + items.len() as u8);
            } else {
                out.push(0x08);
                put_varint(out, items.len() as u64);
            }
            for item in items {
                encode(item, origin, table, out);
            }
        }
        Value::Object(map) => {
            let known: Option<Vec<usize>> = map.keys().map(|k| table.find_string(k)).collect();
            if let Some(shape) = known.as_ref().and_then(|keys| table.shape_index.get(keys)).copied() {
                if shape < 32 {
                    out.push(0x40 + shape as u8);
                } else {
                    out.push(0x0a);
                    put_varint(out, shape as u64);
                }
                for v in map.values() {
                    encode(v, origin, table, out);
                }
                return;
            }
            out.push(0x09);
            put_varint(out, map.len() as u64);
            for (k, v) in map {
                encode_string(k, "", table, out);
                encode(v, origin, table, out);
            }
            if let Some(keys) = map.keys().map(|k| table.find_string(k)).collect::<Option<Vec<usize>>>() {
                table.intern_shape(keys);
            }
        }
    }
}

fn encode_number(n: &Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64() {
        match u {
            0..32 => out.push(0x20 + u as u8),
            32..0x100 => out.extend_from_slice(&[0x0c, u as u8]),
            0x100..0x1_0000 => {
                out.push(0x0d);
                out.extend_from_slice(&(u as u16).to_be_bytes());
            }
            0x1_0000..0x100_0000 => {
                out.push(0x0e);
                out.extend_from_slice(&(u as u32).to_be_bytes()[1..]);
            }
            _ => {
                out.push(0x03);
                put_varint(out, u);
            }
        }
    } else if let Some(i) = n.as_i64() {
        out.push(0x04);
        put_varint(out, (-1 - i) as u64);
    } else {
        out.push(0x05);
        out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_be_bytes());
    }
}

fn encode_string(s: &str, origin: &str, table: &mut Table, out: &mut Vec<u8>) {
    if let Some(i) = table.find_string(s) {
        if i < 128 {
            out.push(0x80 + i as u8);
        } else {
            out.push(0x07);
            put_varint(out, i as u64);
        }
        return;
    }
    let local = (!origin.is_empty())
        .then(|| s.strip_prefix('@').and_then(|r| r.strip_suffix(origin)).and_then(|r| r.strip_suffix(':')))
        .flatten();
    match local {
        Some(local) => {
            out.push(0x0b);
            put_varint(out, local.len() as u64);
            out.extend_from_slice(local.as_bytes());
        }
        None => {
            out.push(0x06);
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
    }
    table.intern(s);
}

/// Take `value` into `table` exactly as [`encode`] would, without the bytes: the
/// receiver of a message sent in another form keeps its table equal to the sender's,
/// which encoded the message too before choosing.
pub fn learn(value: &Value, origin: &str, table: &mut Table) {
    encode(value, origin, table, &mut Vec::new());
}

/// Why a compact body did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// What the decoded value would take as JSON, roughly; bounded by `max`.
    size: usize,
    max: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or(DecodeError("truncated"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        super::frame::get_varint(self.buf, &mut self.pos).map_err(|e| DecodeError(e.0))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = usize::try_from(self.varint()?).map_err(|_| DecodeError("length too large"))?;
        // Every element takes at least one byte.
        if n > self.buf.len() - self.pos {
            return Err(DecodeError("length beyond the message"));
        }
        Ok(n)
    }

    fn grow(&mut self, n: usize) -> Result<(), DecodeError> {
        self.size = self.size.saturating_add(n);
        if self.size > self.max { Err(DecodeError("decoded message too large")) } else { Ok(()) }
    }
}

/// Decode one value sent by `origin`; no more than about `max` bytes of JSON.
pub fn decode(buf: &[u8], origin: &str, table: &mut Table, max: usize) -> Result<Value, DecodeError> {
    let mut r = Reader { buf, pos: 0, size: 0, max };
    let v = value(&mut r, origin, table, 0)?;
    if r.pos != buf.len() {
        return Err(DecodeError("bytes after the value"));
    }
    Ok(v)
}

fn value(r: &mut Reader<'_>, origin: &str, table: &mut Table, depth: usize) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError("nested too deep"));
    }
    r.grow(1)?;
    let tag = r.byte()?;
    Ok(match tag {
        0x00 => Value::Null,
        0x01 => Value::Bool(false),
        0x02 => Value::Bool(true),
        0x03 => Value::from(r.varint()?),
        0x04 => {
            let n = r.varint()?;
            let n = i64::try_from(n).map_err(|_| DecodeError("integer out of range"))?;
            Value::from(-1 - n)
        }
        0x05 => {
            let b = r.bytes(8)?;
            let f = f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            Value::Number(Number::from_f64(f).ok_or(DecodeError("not a finite number"))?)
        }
        0x06 | 0x07 | 0x0b | 0x80..=0xff => Value::String(string(r, tag, origin, table)?),
        0x08 => {
            let n = r.len()?;
            array(r, n, origin, table, depth)?
        }
        0x10..=0x1f => array(r, usize::from(tag - 0x10), origin, table, depth)?,
        0x09 => {
            let n = r.len()?;
            let mut map = Map::new();
            for _ in 0..n {
                let t = r.byte()?;
                let k = string(r, t, "", table)?;
                let v = value(r, origin, table, depth + 1)?;
                map.insert(k, v);
            }
            if map.len() != n {
                return Err(DecodeError("an object repeats a key"));
            }
            // As the encoder does: the shape's keys as the table knows them after the object.
            if let Some(keys) = map.keys().map(|k| table.find_string(k)).collect::<Option<Vec<usize>>>() {
                table.intern_shape(keys);
            }
            Value::Object(map)
        }
        0x0a => {
            let i = usize::try_from(r.varint()?).map_err(|_| DecodeError("no such shape"))?;
            shaped(r, i, origin, table, depth)?
        }
        0x40..=0x5f => shaped(r, usize::from(tag - 0x40), origin, table, depth)?,
        0x0c => Value::from(u64::from(r.byte()?)),
        0x0d => {
            let b = r.bytes(2)?;
            Value::from(u64::from(u16::from_be_bytes([b[0], b[1]])))
        }
        0x0e => {
            let b = r.bytes(3)?;
            Value::from(u64::from(u32::from_be_bytes([0, b[0], b[1], b[2]])))
        }
        0x20..=0x3f => Value::from(u64::from(tag - 0x20)),
        PRESENCE_TAG..=PRESENCE_TAG_LONG => {
            let n = if tag == PRESENCE_TAG_LONG { r.len()? } else { usize::from(tag - PRESENCE_TAG) };
            presence(r, n, origin, table)?
        }
        _ => return Err(DecodeError("unknown tag")),
    })
}

/// A presence EDU pair of `n` pushes in the presence form.
fn presence(r: &mut Reader<'_>, n: usize, origin: &str, table: &mut Table) -> Result<Value, DecodeError> {
    let mut pushes = Vec::with_capacity(n.min(r.buf.len() - r.pos));
    for _ in 0..n {
        let flags = r.byte()?;
        if flags & 0xc0 != 0 {
            return Err(DecodeError("unknown presence flags"));
        }
        r.grow(32)?;
        let mut u = Map::new();
        let t = r.byte()?;
        u.insert("user_id".into(), Value::String(string(r, t, origin, table)?));
        let presence = match PRESENCE_WORDS.get(usize::from(flags & 0x03)) {
            Some(word) => (*word).to_owned(),
            None => {
                let t = r.byte()?;
                string(r, t, "", table)?
            }
        };
        u.insert("presence".into(), Value::String(presence));
        if flags & HAS_ACTIVE != 0 {
            u.insert("currently_active".into(), Value::Bool(flags & ACTIVE != 0));
        } else if flags & ACTIVE != 0 {
            return Err(DecodeError("unknown presence flags"));
        }
        if flags & HAS_AGO != 0 {
            u.insert("last_active_ago".into(), Value::from(r.varint()?));
        }
        if flags & HAS_STATUS != 0 {
            let t = r.byte()?;
            u.insert("status_msg".into(), Value::String(string(r, t, "", table)?));
        }
        pushes.push(Value::Object(u));
    }
    let mut content = Map::new();
    content.insert("push".into(), Value::Array(pushes));
    Ok(Value::Array(vec![Value::String("m.presence".into()), Value::Object(content)]))
}

fn array(r: &mut Reader<'_>, n: usize, origin: &str, table: &mut Table, depth: usize) -> Result<Value, DecodeError> {
    let mut items = Vec::with_capacity(n.min(r.buf.len() - r.pos));
    for _ in 0..n {
        items.push(value(r, origin, table, depth + 1)?);
    }
    Ok(Value::Array(items))
}

fn shaped(r: &mut Reader<'_>, i: usize, origin: &str, table: &mut Table, depth: usize) -> Result<Value, DecodeError> {
    let keys = table.shapes.get(i).ok_or(DecodeError("no such shape"))?.clone();
    let mut map = Map::new();
    for k in keys {
        let key = table.string(k).ok_or(DecodeError("no such string"))?.to_owned();
        r.grow(key.len())?;
        let v = value(r, origin, table, depth + 1)?;
        map.insert(key, v);
    }
    Ok(Value::Object(map))
}

fn string(r: &mut Reader<'_>, tag: u8, origin: &str, table: &mut Table) -> Result<String, DecodeError> {
    let s = match tag {
        0x80..=0xff => table.string(usize::from(tag - 0x80)).ok_or(DecodeError("no such string"))?.to_owned(),
        0x07 => {
            let i = usize::try_from(r.varint()?).map_err(|_| DecodeError("no such string"))?;
            table.string(i).ok_or(DecodeError("no such string"))?.to_owned()
        }
        0x06 | 0x0b => {
            let n = r.len()?;
            let text = std::str::from_utf8(r.bytes(n)?).map_err(|_| DecodeError("a string is not UTF-8"))?;
            let s = if tag == 0x0b {
                if origin.is_empty() {
                    return Err(DecodeError("a user ID where none may be"));
                }
                format!("@{text}:{origin}")
            } else {
                text.to_owned()
            };
            if table.find_string(&s).is_some() {
                return Err(DecodeError("a literal of an interned string"));
            }
            table.intern(&s);
            s
        }
        _ => return Err(DecodeError("not a string")),
    };
    r.grow(s.len() + 2)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn round_trip(v: &Value, tx: &mut Table, rx: &mut Table) -> usize {
        let mut out = Vec::new();
        encode(v, "alpha.test", tx, &mut out);
        assert_eq!(&decode(&out, "alpha.test", rx, 1 << 20).expect("decodes"), v);
        out.len()
    }

    #[test]
    fn values_round_trip_exactly_and_repeats_get_small() {
        let (mut tx, mut rx) = (Table::new(), Table::new());
        let edu = |who: &str, ago: u64| json!([["m.presence", {"push": [{"user_id": who, "presence": "online", "last_active_ago": ago}]}]]);
        let first = round_trip(&edu("@user1:alpha.test", 12_345), &mut tx, &mut rx);
        let again = round_trip(&edu("@user1:alpha.test", 54_321), &mut tx, &mut rx);
        assert!(first <= 24, "first: {first} bytes");
        assert!(again <= 12, "again: {again} bytes");
        let odd = json!({"n": -5, "big": u64::MAX, "min": i64::MIN, "f": 1.5, "z": null, "t": true, "f2": false,
            "s": "x".repeat(100), "remote": "@bob:beta.test", "nested": [[], {}, [1, [2, [3]]]],
            "long": (0..40).collect::<Vec<u32>>(), "user": "@carol:alpha.test", "ü": "ß"});
        round_trip(&odd, &mut tx, &mut rx);
        round_trip(&odd, &mut tx, &mut rx);
    }

    #[test]
    fn presence_updates_take_the_presence_form_and_round_trip() {
        let (mut tx, mut rx) = (Table::new(), Table::new());
        let one = |status: &str| {
            json!([["m.presence", {"push": [{"user_id": "@user0:alpha.test", "presence": "online",
                "currently_active": true, "last_active_ago": 300, "status_msg": status}]}]])
        };
        let first = round_trip(&one("round 0"), &mut tx, &mut rx);
        // Array, tag, flags, the localpart spelled, 2 bytes of ago, the status spelled.
        assert_eq!(first, 1 + 1 + 1 + 7 + 2 + 9);
        // The user and the status are known now: 3 bytes of update.
        assert_eq!(round_trip(&one("round 0"), &mut tx, &mut rx), 1 + 1 + 1 + 1 + 2 + 1);
        let varied = json!([["m.presence", {"push": [
            {"user_id": "@a:alpha.test", "presence": "unavailable"},
            {"user_id": "@b:beta.test", "presence": "busy", "currently_active": false, "status_msg": "@x:alpha.test"},
            {"user_id": "@c:alpha.test", "presence": "offline", "last_active_ago": u64::MAX},
        ]}], ["m.presence", {"push": []}]]);
        round_trip(&varied, &mut tx, &mut rx);
        round_trip(&varied, &mut tx, &mut rx);
        let many: Vec<Value> = (0..40)
            .map(|i| json!({"user_id": format!("@u{i}:alpha.test"), "presence": "online", "last_active_ago": i}))
            .collect();
        round_trip(&json!([["m.presence", {"push": many}]]), &mut tx, &mut rx);
        // What the form cannot say goes in the general form, unchanged.
        for odd in [
            json!([["m.presence", {"push": [{"user_id": "@a:alpha.test", "presence": "online", "extra": 1}]}]]),
            json!([["m.presence", {"push": [{"user_id": "@a:alpha.test", "presence": "online", "last_active_ago": -1}]}]]),
            json!([["m.presence", {"push": [{"user_id": 5, "presence": "online"}]}]]),
            json!([["m.presence", {"push": [], "more": true}]]),
            json!([["m.presence", {"push": [{"presence": "online"}]}]]),
        ] {
            let mut out = Vec::new();
            encode(&odd, "alpha.test", &mut tx, &mut out);
            assert!(!(PRESENCE_TAG..=PRESENCE_TAG_LONG).contains(&out[1]), "{odd}");
            assert_eq!(decode(&out, "alpha.test", &mut rx, 1 << 20).expect("decodes"), odd);
        }
    }

    #[test]
    fn learning_keeps_the_tables_equal() {
        let (mut tx, mut rx) = (Table::new(), Table::new());
        let v = json!([["m.presence", {"push": [{"user_id": "@new:alpha.test", "presence": "online", "status_msg": "hi"}]}]]);
        // Sent in another form: both ends take it in.
        let mut out = Vec::new();
        encode(&v, "alpha.test", &mut tx, &mut out);
        learn(&v, "alpha.test", &mut rx);
        assert_eq!(round_trip(&v, &mut tx, &mut rx), 1 + 1 + 1 + 1 + 1);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut t = Table::new();
        for bad in [
            &[0x0f][..],
            &[0x08, 0xff, 0xff, 0x03],
            &[0x9f],
            &[0x41],
            &[0x06, 5, b'a'],
            &[0x0b, 1, b'a', 0],
            &[0x61],
            &[0x61, 0x40, 0x82],
            &[0x61, 0x08, 0x82],
            &[0x61, 0x10, 0x82],
            &[0x7f, 0xff, 0xff, 0xff, 0x0f],
        ] {
            assert!(decode(bad, "alpha.test", &mut t, 1 << 20).is_err(), "{bad:?}");
        }
        // A bomb of references is bounded.
        let mut tx = Table::new();
        let mut seed = Vec::new();
        encode(&json!("y".repeat(64)), "", &mut tx, &mut seed);
        let mut rx = Table::new();
        decode(&seed, "", &mut rx, 1 << 20).expect("seed");
        let mut bomb = vec![0x08];
        put_varint(&mut bomb, 5000);
        bomb.extend(std::iter::repeat_n(0x80 + VOCABULARY.len() as u8, 5000));
        assert!(decode(&bomb, "", &mut rx, 100_000).is_err());
    }
}
