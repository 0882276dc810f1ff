//! The API keys that may use client routes: one aggregate, so every instance knows the same
//! keys from the log, and the log shows who was let in. A key is kept only as the SHA-256 of
//! its text; the text is shown once, to the operator who asked for it.

use super::DomainError;
use chrono::{DateTime, Utc};
use flashrent_events::{ApiKeyId, Event, KeyScope, KeyUse};
use std::collections::{BTreeMap, HashSet};

/// What deciding needs of a key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyState {
    pub revoked: bool,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiKeys {
    pub keys: BTreeMap<ApiKeyId, KeyState>,
    /// Every hash issued, so no two keys can ever share one.
    pub hashes: HashSet<String>,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Create {
        key_id: ApiKeyId,
        scope: KeyScope,
        name: Option<String>,
        key_hash: String,
    },
    Revoke {
        key_id: ApiKeyId,
    },
    /// When keys were last let in; uses older than what is recorded, and of keys revoked or
    /// unknown, are left out.
    RecordUses {
        uses: Vec<KeyUse>,
    },
}

pub fn decide(keys: &ApiKeys, command: &Command) -> Result<Vec<Event>, DomainError> {
    match command {
        Command::Create {
            key_id,
            scope,
            name,
            key_hash,
        } => {
            if keys.keys.contains_key(key_id) || keys.hashes.contains(key_hash) {
                return Err(DomainError::ApiKeyExists);
            }
            Ok(vec![Event::ApiKeyCreated {
                key_id: *key_id,
                scope: *scope,
                name: name.clone(),
                key_hash: key_hash.clone(),
            }])
        }
        Command::Revoke { key_id } => match keys.keys.get(key_id) {
            None => Err(DomainError::ApiKeyNotFound(*key_id)),
            Some(k) if k.revoked => Ok(vec![]),
            Some(_) => Ok(vec![Event::ApiKeyRevoked { key_id: *key_id }]),
        },
        Command::RecordUses { uses } => {
            let newer: Vec<KeyUse> = uses
                .iter()
                .copied()
                .filter(|u| {
                    keys.keys.get(&u.key_id).is_some_and(|k| {
                        !k.revoked && k.last_used_at.is_none_or(|last| last < u.at)
                    })
                })
                .collect();
            if newer.is_empty() {
                return Ok(vec![]);
            }
            Ok(vec![Event::ApiKeysUsed { uses: newer }])
        }
    }
}

pub fn evolve(mut keys: ApiKeys, event: &Event) -> ApiKeys {
    match event {
        Event::ApiKeyCreated {
            key_id, key_hash, ..
        } => {
            keys.keys.insert(
                *key_id,
                KeyState {
                    revoked: false,
                    last_used_at: None,
                },
            );
            keys.hashes.insert(key_hash.clone());
        }
        Event::ApiKeyRevoked { key_id } => {
            if let Some(k) = keys.keys.get_mut(key_id) {
                k.revoked = true;
            }
        }
        Event::ApiKeysUsed { uses } => {
            for u in uses {
                if let Some(k) = keys.keys.get_mut(&u.key_id) {
                    k.last_used_at = k.last_used_at.max(Some(u.at));
                }
            }
        }
        _ => return keys,
    }
    keys.version += 1;
    keys
}
