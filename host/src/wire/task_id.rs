use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A task's id. On the wire it is `"task-"` followed by 16 hex digits; inside the hub it is the
/// task's submission sequence number, so ordering by id is ordering by submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub u64);

impl TaskId {
    /// Parses the wire form. Anything else is `None`: for a client that means "no such task".
    pub fn parse(text: &str) -> Option<TaskId> {
        let hex = text.strip_prefix("task-")?;
        if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(hex, 16).ok().map(TaskId)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task-{:016x}", self.0)
    }
}

impl Serialize for TaskId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        TaskId::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not a task id: {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_json() {
        let id = TaskId(0x1234_abcd);
        assert_eq!(id.to_string(), "task-000000001234abcd");
        assert_eq!(TaskId::parse(&id.to_string()), Some(id));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<TaskId>(&json).unwrap(), id);
    }

    #[test]
    fn refuses_other_shapes() {
        for bad in [
            "",
            "task-",
            "task-123",
            "task-zzzzzzzzzzzzzzzz",
            "TASK-0000000000000001",
            "task-00000000000000001",
        ] {
            assert_eq!(TaskId::parse(bad), None, "{bad}");
        }
    }
}
