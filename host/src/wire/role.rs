//! The role a token gives its holder. Shared by the hub (which stores it with the token and
//! decides every request from it), `POST /admin/tokens` and the command line.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a token may do. Tenants limit what a client or agent sees; an admin sees everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Connect over `/ws` as its own agent; submit under its tenant; read its tenant's tasks
    /// and the tasks it is or was assigned.
    Agent,
    /// Submit tasks under its tenant; list, read, cancel and retry its tenant's tasks. Cannot
    /// connect as an agent.
    Client,
}

impl Role {
    /// Every role, in the order refusals list them.
    pub const ALL: [Role; 3] = [Role::Agent, Role::Client, Role::Admin];

    /// The role a token gets when `POST /admin/tokens` names none.
    pub const DEFAULT: Role = Role::Agent;

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Client => "client",
        }
    }

    /// The role named `name`; `None` for anything else (see [`Role::expected`]).
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }

    /// What a refusal of an unknown role says is expected: `agent, client or admin`.
    pub fn expected() -> String {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        let (last, rest) = names.split_last().expect("there are roles");
        format!("{} or {last}", rest.join(", "))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_back_and_serialize_by_name() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::expected(), "agent, client or admin");
    }
}
