//! The structure-aware mutator: one input in, a changed one out.
//!
//! Byte-level changes (bit flips, boundary bytes, cut, copy and splice) find what a decoder does
//! with damage; the text-level ones aim at what a JSON reader or a binary record decoder gets
//! wrong: numbers at their limits, deep nesting, very long strings, invalid UTF-8 and escapes,
//! and, when the input is JSON, a change to one node of the parsed tree (so that the result
//! still parses and reaches the validation behind the parser).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

/// Numbers at the edges of what the hub reads: signs, 2^31, 2^32, 2^53, 2^63, 2^64 and past,
/// fractions, exponents, and numbers written as other types.
const BOUNDARY_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "1.5",
    "0.0",
    "-1e-300",
    "1e308",
    "1e309",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "\"1\"",
    "null",
    "true",
    "[]",
    "{}",
];

/// Byte values that mean something to a decoder: zero, all ones, the varint continuation bit,
/// JSON's structural characters, and UTF-8 lead and continuation bytes.
const BOUNDARY_BYTES: &[u8] = &[
    0x00, 0x01, 0x02, 0x7f, 0x80, 0x81, 0xff, 0xfe, b'{', b'}', b'[', b']', b'"', b'\\', b':',
    b',', b'0', b'9', b'-', 0xc0, 0xc3, 0xe0, 0xed, 0xf0, 0xf4, 0xf8, 0xbf,
];

/// Sequences that are not valid UTF-8 (a lone continuation byte, an overlong form, a
/// surrogate, a truncated four-byte form, a code point past U+10FFFF), and escapes that are
/// valid JSON syntax but awkward text (a lone surrogate, NUL, an unfinished escape).
const AWKWARD_TEXT: &[&[u8]] = &[
    b"\x80",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf0\x9f\x98",
    b"\xf4\x90\x80\x80",
    b"\xff\xfe",
    b"\\ud800",
    b"\\udc00\\ud800",
    b"\\u0000",
    b"\\u",
    b"\\",
    b"\x00",
    "\u{feff}".as_bytes(),
    "\u{202e}".as_bytes(),
];

pub struct Mutator {
    rng: StdRng,
    /// The longest input made; longer ones are cut (the driver's bound on one execution).
    max_len: usize,
}

impl Mutator {
    pub fn new(seed: u64, max_len: usize) -> Mutator {
        Mutator {
            rng: StdRng::seed_from_u64(seed),
            max_len,
        }
    }

    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// A new input made from `input` by one to four mutations; `others` are spliced from.
    pub fn mutate(&mut self, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
        let mut out = input.to_vec();
        let rounds = self.rng.random_range(1..=4);
        for _ in 0..rounds {
            self.once(&mut out, others);
        }
        out.truncate(self.max_len);
        out
    }

    fn once(&mut self, out: &mut Vec<u8>, others: &[Vec<u8>]) {
        match self.rng.random_range(0..13) {
            0 => self.flip_bit(out),
            1 => self.boundary_byte(out),
            2 => self.cut(out),
            3 => self.copy_range(out),
            4 => self.splice(out, others),
            5 => self.boundary_number(out),
            6 => self.nest(out),
            7 => self.long_run(out),
            8 => self.awkward_text(out),
            9 => self.varint(out),
            _ => {
                // The JSON-aware change is the most productive on JSON inputs: weight it.
                if !self.json_node(out) {
                    self.flip_bit(out);
                }
            }
        }
    }

    fn pos(&mut self, out: &[u8]) -> usize {
        self.rng.random_range(0..=out.len())
    }

    fn flip_bit(&mut self, out: &mut [u8]) {
        if out.is_empty() {
            return;
        }
        let at = self.rng.random_range(0..out.len());
        out[at] ^= 1 << self.rng.random_range(0..8);
    }

    fn boundary_byte(&mut self, out: &mut Vec<u8>) {
        let byte = BOUNDARY_BYTES[self.rng.random_range(0..BOUNDARY_BYTES.len())];
        if out.is_empty() || self.rng.random_bool(0.3) {
            let at = self.pos(out);
            out.insert(at, byte);
        } else {
            let at = self.rng.random_range(0..out.len());
            out[at] = byte;
        }
    }

    fn cut(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            return;
        }
        let start = self.rng.random_range(0..out.len());
        let len = self.rng.random_range(1..=(out.len() - start).min(64));
        out.drain(start..start + len);
    }

    fn copy_range(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            return;
        }
        let start = self.rng.random_range(0..out.len());
        let len = self.rng.random_range(1..=(out.len() - start).min(256));
        let chunk = out[start..start + len].to_vec();
        let at = self.pos(out);
        out.splice(at..at, chunk);
    }

    /// The start of this input and the end of another.
    fn splice(&mut self, out: &mut Vec<u8>, others: &[Vec<u8>]) {
        if others.is_empty() {
            return;
        }
        let other = &others[self.rng.random_range(0..others.len())];
        let keep = self.pos(out);
        let from = self.rng.random_range(0..=other.len());
        out.truncate(keep);
        out.extend_from_slice(&other[from..]);
    }

    /// Replaces a run of digits (or inserts at a random place) with a boundary number.
    fn boundary_number(&mut self, out: &mut Vec<u8>) {
        let number = BOUNDARY_NUMBERS[self.rng.random_range(0..BOUNDARY_NUMBERS.len())];
        let digits: Vec<usize> = (0..out.len())
            .filter(|&i| out[i].is_ascii_digit())
            .collect();
        if digits.is_empty() {
            let at = self.pos(out);
            out.splice(at..at, number.bytes());
            return;
        }
        let start = digits[self.rng.random_range(0..digits.len())];
        let mut end = start;
        while end < out.len() && (out[end].is_ascii_digit() || b".eE+-".contains(&out[end])) {
            end += 1;
        }
        let mut begin = start;
        while begin > 0 && (out[begin - 1].is_ascii_digit() || out[begin - 1] == b'-') {
            begin -= 1;
        }
        out.splice(begin..end, number.bytes());
    }

    /// Wraps a point of the input in many arrays or objects: past any recursion limit.
    fn nest(&mut self, out: &mut Vec<u8>) {
        let depth = *[2usize, 127, 128, 129, 1_000, 20_000]
            .get(self.rng.random_range(0..6))
            .unwrap_or(&2);
        let (open, close): (&[u8], &[u8]) = if self.rng.random_bool(0.5) {
            (b"[", b"]")
        } else {
            (b"{\"a\":", b"}")
        };
        let at = self.pos(out);
        let mut middle = Vec::with_capacity(depth * (open.len() + close.len()) + 1);
        for _ in 0..depth {
            middle.extend_from_slice(open);
        }
        middle.push(b'1');
        if self.rng.random_bool(0.8) {
            for _ in 0..depth {
                middle.extend_from_slice(close);
            }
        }
        out.splice(at..at, middle);
    }

    /// A long run of one character, inside a string when the input has one.
    fn long_run(&mut self, out: &mut Vec<u8>) {
        let len = self.rng.random_range(1..=self.max_len.max(2) / 2);
        let byte = *[b'a', b' ', b'0', 0xff, b'\\']
            .get(self.rng.random_range(0..5))
            .unwrap_or(&b'a');
        let quotes: Vec<usize> = (0..out.len()).filter(|&i| out[i] == b'"').collect();
        let at = if quotes.is_empty() || self.rng.random_bool(0.2) {
            self.pos(out)
        } else {
            quotes[self.rng.random_range(0..quotes.len())] + 1
        };
        out.splice(at..at, std::iter::repeat_n(byte, len));
    }

    fn awkward_text(&mut self, out: &mut Vec<u8>) {
        let text = AWKWARD_TEXT[self.rng.random_range(0..AWKWARD_TEXT.len())];
        let quotes: Vec<usize> = (0..out.len()).filter(|&i| out[i] == b'"').collect();
        let at = if quotes.is_empty() {
            self.pos(out)
        } else {
            quotes[self.rng.random_range(0..quotes.len())] + 1
        };
        out.splice(at..at, text.iter().copied());
    }

    /// A LEB128 varint or a four-byte little-endian length of a boundary value, written over
    /// or into the input: the binary record's lengths and counts.
    fn varint(&mut self, out: &mut Vec<u8>) {
        let value: u64 = *[
            0,
            1,
            0x7f,
            0x80,
            0xffff,
            u32::MAX as u64,
            u32::MAX as u64 + 1,
            i64::MAX as u64,
            u64::MAX,
        ]
        .get(self.rng.random_range(0..9))
        .unwrap_or(&0);
        let mut bytes = Vec::new();
        if self.rng.random_bool(0.5) {
            let mut v = value;
            while v >= 0x80 {
                bytes.push(v as u8 | 0x80);
                v >>= 7;
            }
            bytes.push(v as u8);
        } else {
            bytes.extend_from_slice(&(value as u32).to_le_bytes());
        }
        let at = self.pos(out);
        let end = if self.rng.random_bool(0.5) {
            (at + bytes.len()).min(out.len())
        } else {
            at
        };
        out.splice(at..end, bytes);
    }

    /// Parses the input as JSON and changes one node; false when it is not JSON.
    fn json_node(&mut self, out: &mut Vec<u8>) -> bool {
        let Ok(mut value) = serde_json::from_slice::<Value>(out) else {
            return false;
        };
        let nodes = count_nodes(&value);
        let target = self.rng.random_range(0..nodes);
        let replacement = self.node_value();
        let action = self.rng.random_range(0..4);
        let mut index = 0;
        let mut rng = StdRng::seed_from_u64(self.rng.random());
        edit_node(
            &mut value,
            target,
            &mut index,
            &mut |node: &mut Value| match action {
                0 | 1 => *node = replacement.clone(),
                2 => {
                    // Drop a key, or an element.
                    match node {
                        Value::Object(map) if !map.is_empty() => {
                            let key = map.keys().nth(rng.random_range(0..map.len())).cloned();
                            if let Some(key) = key {
                                map.remove(&key);
                            }
                        }
                        Value::Array(items) if !items.is_empty() => {
                            items.remove(rng.random_range(0..items.len()));
                        }
                        _ => *node = Value::Null,
                    }
                }
                _ => {
                    // Add a key the hub may or may not know, or an element.
                    let key = ["type", "generation", "task_id", "result", "priority", "x"]
                        [rng.random_range(0..6)];
                    match node {
                        Value::Object(map) => {
                            map.insert(key.to_string(), replacement.clone());
                        }
                        Value::Array(items) => items.push(replacement.clone()),
                        _ => {}
                    }
                }
            },
        );
        *out = value.to_string().into_bytes();
        true
    }

    /// A value to put in a JSON tree: another type, a boundary number, a long or empty string.
    fn node_value(&mut self) -> Value {
        match self.rng.random_range(0..10) {
            0 => Value::Null,
            1 => Value::Bool(self.rng.random()),
            2 => serde_json::from_str(
                BOUNDARY_NUMBERS[self.rng.random_range(0..BOUNDARY_NUMBERS.len())],
            )
            .unwrap_or(Value::Null),
            3 => Value::String(String::new()),
            4 => Value::String("x".repeat(self.rng.random_range(1..=self.max_len.max(2) / 2))),
            5 => Value::String("\u{0}\u{7f}\u{feff}\u{10ffff}".to_string()),
            6 => Value::Array(Vec::new()),
            7 => Value::Object(Map::new()),
            8 => Value::from(self.rng.random::<u64>()),
            _ => Value::from(-(self.rng.random::<u32>() as i64)),
        }
    }
}

fn count_nodes(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Calls `edit` on the `target`-th node in pre-order.
fn edit_node(
    value: &mut Value,
    target: usize,
    index: &mut usize,
    edit: &mut dyn FnMut(&mut Value),
) {
    if *index == target {
        *index += 1;
        edit(value);
        return;
    }
    *index += 1;
    match value {
        Value::Array(items) => {
            for item in items {
                if *index > target {
                    return;
                }
                edit_node(item, target, index, edit);
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                if *index > target {
                    return;
                }
                edit_node(item, target, index, edit);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_inputs_and_respect_the_length_cap() {
        let mut mutator = Mutator::new(7, 512);
        let seed = br#"{"type":"task_complete","task_id":"t","generation":3}"#.to_vec();
        let mut changed = 0;
        for _ in 0..2_000 {
            let out = mutator.mutate(&seed, std::slice::from_ref(&seed));
            assert!(out.len() <= 512, "{} bytes", out.len());
            if out != seed {
                changed += 1;
            }
        }
        assert!(
            changed > 1_800,
            "only {changed} of 2000 mutations changed the input"
        );
    }

    #[test]
    fn the_same_seed_makes_the_same_inputs() {
        let seed = b"{\"a\":[1,2,3]}".to_vec();
        let run = |s| {
            let mut m = Mutator::new(s, 256);
            (0..100).map(|_| m.mutate(&seed, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
