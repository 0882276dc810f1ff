//! Given/when/then tests of the aggregates' rules, and property tests of the invariants
//! over random command sequences.

use super::account::{self, PlaceOrder};
use super::order::{self, OrderStatus};
use super::pool;
use super::{DomainError, PartitionState};
use chrono::{TimeZone, Utc};
use flashrent_events::{
    EnergyAmount, Event, FailureReason, OrderId, OrderKind, RentalDuration, Sun, TronAddress,
    UserId,
};
use proptest::prelude::*;

fn user() -> UserId {
    UserId::parse("42").unwrap()
}
fn addr() -> TronAddress {
    TronAddress::parse("TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2").unwrap()
}
fn supplier() -> TronAddress {
    TronAddress::parse("TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1").unwrap()
}
fn trx(text: &str) -> Sun {
    Sun::parse_trx(text).unwrap()
}

fn given(events: &[Event]) -> PartitionState {
    let mut s = PartitionState::default();
    for e in events {
        s.evolve(e);
    }
    s
}

fn place(id: OrderId, price: Sun) -> account::Command {
    account::Command::PlaceOrder(Box::new(PlaceOrder {
        order_id: id,
        kind: OrderKind::Rental,
        energy: EnergyAmount::new(65_000).unwrap(),
        duration: RentalDuration::parse("1h").unwrap(),
        receive_address: addr(),
        price,
        pinned_wallet: None,
        idempotency: None,
        estimated_completion: Utc.timestamp_opt(0, 0).unwrap(),
        callback: Default::default(),
    }))
}

fn credited(amount: &str, reference: &str) -> Event {
    Event::BalanceCredited {
        user_id: user(),
        amount: trx(amount),
        reference: reference.into(),
        balance_after: trx(amount),
    }
}

#[test]
fn placing_an_order_pays_for_it_in_the_same_decision() {
    let s = given(&[credited("10", "d")]);
    let id = OrderId::new_v7();
    let events = account::decide(&s.account(user()), place(id, trx("5.85"))).unwrap();
    assert_eq!(events.len(), 2);
    assert!(matches!(events[0], Event::OrderPlaced { .. }));
    assert_eq!(
        events[1],
        Event::BalanceDebited {
            user_id: user(),
            order_id: id,
            amount: trx("5.85"),
            balance_after: trx("4.15")
        }
    );
}

#[test]
fn an_order_above_the_balance_is_refused_with_both_amounts() {
    let s = given(&[credited("3.5", "d")]);
    assert_eq!(
        account::decide(&s.account(user()), place(OrderId::new_v7(), trx("5.85"))),
        Err(DomainError::InsufficientBalance {
            required: trx("5.85"),
            current: trx("3.5")
        })
    );
}

#[test]
fn a_credit_reference_credits_once_and_conflicts_on_another_amount() {
    let s = given(&[credited("10", "d")]);
    let acc = s.account(user());
    assert_eq!(
        account::decide(
            &acc,
            account::Command::Credit {
                amount: trx("10"),
                reference: "d".into()
            }
        ),
        Ok(vec![])
    );
    assert!(matches!(
        account::decide(
            &acc,
            account::Command::Credit {
                amount: trx("11"),
                reference: "d".into()
            }
        ),
        Err(DomainError::CreditReferenceConflict { .. })
    ));
}

#[test]
fn a_processing_order_with_a_live_transaction_cannot_fail_without_naming_it() {
    let id = OrderId::new_v7();
    let mut s = given(&[credited("10", "d")]);
    for e in account::decide(&s.account(user()), place(id, trx("5.85"))).unwrap() {
        s.evolve(&e);
    }
    s.evolve(&Event::OrderProcessing {
        order_id: id,
        supplier_wallet: supplier(),
    });
    s.evolve(&Event::DelegationSigned {
        order_id: id,
        tx_id: "aa".into(),
        signed_tx: "00".into(),
        expires_at: Utc::now(),
    });
    let o = &s.orders[&id];
    let fail = |tx: Option<&str>| order::Command::Fail {
        reason: FailureReason::DelegationFailed,
        detail: String::new(),
        failed_tx: tx.map(|t| (t.into(), order::NeverLands::FailedOnChain)),
    };
    assert!(order::decide(o, fail(None)).is_err());
    assert!(order::decide(o, fail(Some("bb"))).is_err());
    assert_eq!(order::decide(o, fail(Some("aa"))).unwrap().len(), 1);
    // Named, but with a head that has not passed its expiry: it might still land.
    let early = order::Command::Fail {
        reason: FailureReason::DelegationFailed,
        detail: String::new(),
        failed_tx: Some((
            "aa".into(),
            order::NeverLands::PastExpiry {
                head_time: Utc::now() - chrono::Duration::minutes(1),
            },
        )),
    };
    assert!(order::decide(o, early).is_err());
    // A second signature while one is live is refused: one delegation per order.
    let resign = order::Command::RecordDelegationSigned {
        tx_id: "cc".into(),
        signed_tx: "01".into(),
        expires_at: Utc::now(),
    };
    assert!(order::decide(o, resign).is_err());
}

#[test]
fn the_pool_never_reserves_the_same_energy_twice() {
    let s = given(&[Event::SupplierWalletRegistered {
        address: supplier(),
        energy_capacity: EnergyAmount::new(100_000).unwrap(),
    }]);
    let e = EnergyAmount::new(65_000).unwrap();
    let (a, b) = (OrderId::new_v7(), OrderId::new_v7());
    let mut s = s;
    for ev in pool::decide(
        &s.pool,
        pool::Command::Reserve {
            order_id: a,
            energy: e,
            pinned_wallet: None,
        },
    )
    .unwrap()
    {
        s.evolve(&ev);
    }
    assert_eq!(
        pool::decide(
            &s.pool,
            pool::Command::Reserve {
                order_id: a,
                energy: e,
                pinned_wallet: None
            }
        ),
        Ok(vec![])
    );
    assert_eq!(
        pool::decide(
            &s.pool,
            pool::Command::Reserve {
                order_id: b,
                energy: e,
                pinned_wallet: None
            }
        ),
        Ok(vec![Event::EnergyReservationRejected {
            order_id: b,
            energy: e
        }])
    );
}

#[derive(Debug, Clone)]
enum Op {
    Credit(u64, u8),
    Order(u64),
    Deduct(usize, u64),
    Settle(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u64..50_000_000, 0u8..5).prop_map(|(a, r)| Op::Credit(a, r)),
        (1u64..20_000_000).prop_map(Op::Order),
        (0usize..20, 1u64..20_000_000).prop_map(|(i, a)| Op::Deduct(i, a)),
        (0usize..20, any::<bool>()).prop_map(|(i, ok)| Op::Settle(i, ok)),
    ]
}

/// Drives an order to its end the way the saga does: complete, or fail and refund.
#[test]
fn a_live_transaction_is_given_up_only_once_the_chains_head_is_past_its_expiry_or_it_failed() {
    use order::NeverLands::{FailedOnChain, PastExpiry};
    let id = OrderId::new_v7();
    let expires_at = Utc.timestamp_millis_opt(1_800_000_066_000).unwrap();
    let mut s = given(&[credited("10", "d")]);
    for e in account::decide(&s.account(user()), place(id, trx("5.85"))).unwrap() {
        s.evolve(&e);
    }
    s.evolve(&Event::OrderProcessing {
        order_id: id,
        supplier_wallet: supplier(),
    });
    s.evolve(&Event::DelegationSigned {
        order_id: id,
        tx_id: "aa".into(),
        signed_tx: "00".into(),
        expires_at,
    });
    let expire = |proof| order::Command::ExpireDelegation {
        tx_id: "aa".into(),
        proof,
    };
    let at = |ms: i64| PastExpiry {
        head_time: expires_at + chrono::Duration::milliseconds(ms),
    };
    let o = &s.orders[&id];
    // A head at the expiry, or before it: the transaction may still land.
    assert!(matches!(
        order::decide(o, expire(at(0))),
        Err(DomainError::InvalidTransition { .. })
    ));
    assert!(order::decide(o, expire(at(-60_000))).is_err());
    assert_eq!(order::decide(o, expire(at(1))).unwrap().len(), 1);
    assert_eq!(order::decide(o, expire(FailedOnChain)).unwrap().len(), 1);

    // The same for a reclaim.
    s.evolve(&Event::OrderCompleted {
        order_id: id,
        transaction_hash: "aa".into(),
        block_number: 7,
        completed_at: expires_at,
        rental_ends_at: expires_at,
    });
    s.evolve(&Event::ReclaimSigned {
        order_id: id,
        tx_id: "bb".into(),
        signed_tx: "01".into(),
        expires_at,
    });
    let o = &s.orders[&id];
    let expire = |proof| order::Command::ExpireReclaim {
        tx_id: "bb".into(),
        proof,
    };
    assert!(order::decide(o, expire(at(0))).is_err());
    assert_eq!(order::decide(o, expire(at(1))).unwrap().len(), 1);
    assert_eq!(order::decide(o, expire(FailedOnChain)).unwrap().len(), 1);

    // A writer's state saved before the expiry was kept decodes, and takes the saga's proof.
    let mut old = serde_json::to_value(o).unwrap();
    assert_eq!(old["reclaim"]["expires_at"], serde_json::json!(expires_at));
    old["reclaim"].as_object_mut().unwrap().remove("expires_at");
    let old: order::Order = serde_json::from_value(old).unwrap();
    assert_eq!(old.reclaim.as_ref().unwrap().expires_at, None);
    assert_eq!(order::decide(&old, expire(at(0))).unwrap().len(), 1);
}

fn settle(s: &PartitionState, id: OrderId, complete: bool) -> Vec<Event> {
    let o = s.orders[&id].clone();
    let mut s = s.clone();
    let mut out = Vec::new();
    let mut apply = |s: &mut PartitionState, evs: Vec<Event>| {
        for e in evs {
            s.evolve(&e);
            out.push(e);
        }
    };
    if o.status == OrderStatus::Pending {
        apply(
            &mut s,
            order::decide(
                &o,
                order::Command::StartProcessing {
                    supplier_wallet: supplier(),
                    signed: None,
                },
            )
            .unwrap(),
        );
    }
    if complete && s.orders[&id].status == OrderStatus::Processing {
        let tx = order::Command::RecordDelegationSigned {
            tx_id: "t".into(),
            signed_tx: "s".into(),
            expires_at: Utc::now(),
        };
        let evs = order::decide(&s.orders[&id], tx).unwrap();
        apply(&mut s, evs);
        let now = Utc::now();
        let done = order::Command::Complete {
            transaction_hash: "t".into(),
            block_number: 1,
            now,
            rental_ends_at: now,
        };
        let evs = order::decide(&s.orders[&id], done).unwrap();
        apply(&mut s, evs);
    } else if s.orders[&id].status == OrderStatus::Processing {
        let fail = order::Command::Fail {
            reason: FailureReason::DelegationFailed,
            detail: String::new(),
            failed_tx: None,
        };
        let evs = order::decide(&s.orders[&id], fail).unwrap();
        apply(&mut s, evs);
    }
    if s.orders[&id].status == OrderStatus::Failed {
        let refund = account::Command::Refund {
            order: s.orders[&id].clone(),
        };
        let evs = account::decide(&s.account(o.user_id), refund).unwrap();
        apply(&mut s, evs);
    }
    out
}

#[derive(Default)]
struct Books {
    credits: u64,
    debits: u64,
    refunds: u64,
}

impl Books {
    fn record(&mut self, s: &mut PartitionState, events: Vec<Event>) {
        for e in events {
            match &e {
                Event::BalanceCredited { amount, .. } => self.credits += amount.as_sun(),
                Event::BalanceDebited { amount, .. } => self.debits += amount.as_sun(),
                Event::BalanceRefunded { amount, .. } => self.refunds += amount.as_sun(),
                _ => {}
            }
            s.evolve(&e);
        }
    }
}

proptest! {
    #[test]
    fn no_command_sequence_breaks_the_books(ops in proptest::collection::vec(op(), 1..60), ends in proptest::collection::vec(any::<bool>(), 20)) {
        let mut s = PartitionState::default();
        let mut orders: Vec<OrderId> = Vec::new();
        let mut books = Books::default();
        for op in ops {
            let acc = s.account(user());
            let result = match op {
                Op::Credit(a, r) => account::decide(&acc, account::Command::Credit { amount: Sun::from_sun(a), reference: format!("r{r}") }),
                Op::Order(price) => {
                    let id = OrderId::new_v7();
                    let r = account::decide(&acc, place(id, Sun::from_sun(price)));
                    if r.is_ok() { orders.push(id); }
                    r
                }
                Op::Deduct(i, a) => match orders.get(i) {
                    Some(id) => account::decide(&acc, account::Command::Deduct { order: s.orders.get(id).cloned(), order_id: *id, amount: Sun::from_sun(a) }),
                    None => Ok(vec![]),
                },
                Op::Settle(i, ok) => Ok(orders.get(i).map(|id| settle(&s, *id, ok)).unwrap_or_default()),
            };
            if let Ok(evs) = result {
                books.record(&mut s, evs);
            }
            let (credits, debits, refunds) = (books.credits, books.debits, books.refunds);
            let balance = s.account(user()).balance.as_sun();
            prop_assert_eq!(balance as i128, credits as i128 - debits as i128 + refunds as i128);
        }
        // Finish every order, then every paid order is completed or refunded, exactly once.
        for (i, id) in orders.clone().iter().enumerate() {
            let evs = settle(&s, *id, ends[i % ends.len()]);
            books.record(&mut s, evs);
        }
        let (credits, debits, refunds) = (books.credits, books.debits, books.refunds);
        for id in &orders {
            let o = &s.orders[id];
            prop_assert!(o.paid);
            prop_assert!(o.status == OrderStatus::Completed || (o.status == OrderStatus::Refunded && o.refunded));
        }
        let balance = s.account(user()).balance.as_sun();
        prop_assert_eq!(balance as i128, credits as i128 - debits as i128 + refunds as i128);
        let refunded = orders.iter().filter(|id| s.orders[id].refunded).map(|id| s.orders[id].price.as_sun()).sum::<u64>();
        prop_assert_eq!(refunds, refunded);
    }
}

#[test]
fn the_chain_inventory_sets_capacity_to_what_it_can_delegate_plus_what_we_delegated() {
    let order = OrderId::new_v7();
    let mut s = given(&[
        Event::SupplierWalletRegistered {
            address: supplier(),
            energy_capacity: EnergyAmount::new(100_000).unwrap(),
        },
        Event::EnergyReserved {
            order_id: order,
            wallet: supplier(),
            energy: EnergyAmount::new(30_000).unwrap(),
        },
        Event::ReservedEnergyDelegated {
            order_id: order,
            wallet: supplier(),
            energy: EnergyAmount::new(30_000).unwrap(),
        },
    ]);
    let observe = |delegatable| pool::Command::ObserveChainInventory {
        address: supplier(),
        delegatable,
    };
    let events = pool::decide(&s.pool, observe(170_000)).unwrap();
    assert_eq!(
        events,
        vec![Event::SupplierCapacityObserved {
            address: supplier(),
            energy_capacity: 200_000,
        }]
    );
    s.evolve(&events[0]);
    assert_eq!(s.pool.wallets[&supplier()].available(), 170_000);
    // Unchanged: nothing to record.
    assert_eq!(pool::decide(&s.pool, observe(170_000)), Ok(vec![]));
    // A wallet the pool does not know is left alone.
    let stranger = pool::Command::ObserveChainInventory {
        address: flashrent_events::TronAddress::parse("TMVQGm1qAQYVdetCeGRRkTWYYrLXuHK2HC")
            .unwrap(),
        delegatable: 5,
    };
    assert_eq!(pool::decide(&s.pool, stranger), Ok(vec![]));
}

mod api_keys {
    use super::super::keys::{self, Command};
    use super::*;
    use flashrent_events::{ApiKeyId, KeyScope, KeyUse};

    fn created(id: ApiKeyId, hash: &str) -> Event {
        Event::ApiKeyCreated {
            key_id: id,
            scope: KeyScope::User { user_id: user() },
            name: None,
            key_hash: hash.into(),
        }
    }

    fn create(id: ApiKeyId, hash: &str) -> Command {
        Command::Create {
            key_id: id,
            scope: KeyScope::Frontend,
            name: Some("bot".into()),
            key_hash: hash.into(),
        }
    }

    #[test]
    fn a_key_is_issued_once_and_never_with_a_hash_already_issued() {
        let id = ApiKeyId::new_v7();
        let s = given(&[created(id, "aa")]);
        assert_eq!(
            keys::decide(&s.api_keys, create(id, "bb")),
            Err(DomainError::ApiKeyExists)
        );
        assert_eq!(
            keys::decide(&s.api_keys, create(ApiKeyId::new_v7(), "aa")),
            Err(DomainError::ApiKeyExists)
        );
        let fresh = ApiKeyId::new_v7();
        assert_eq!(
            keys::decide(&s.api_keys, create(fresh, "cc"))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn revoking_an_unknown_key_is_refused_and_a_revoked_key_stays_revoked() {
        let id = ApiKeyId::new_v7();
        let s = given(&[created(id, "aa")]);
        let unknown = ApiKeyId::new_v7();
        assert_eq!(
            keys::decide(&s.api_keys, Command::Revoke { key_id: unknown }),
            Err(DomainError::ApiKeyNotFound(unknown))
        );
        assert_eq!(
            keys::decide(&s.api_keys, Command::Revoke { key_id: id }),
            Ok(vec![Event::ApiKeyRevoked { key_id: id }])
        );
        let s = given(&[created(id, "aa"), Event::ApiKeyRevoked { key_id: id }]);
        assert_eq!(
            keys::decide(&s.api_keys, Command::Revoke { key_id: id }),
            Ok(vec![])
        );
    }

    #[test]
    fn only_newer_uses_of_live_keys_are_recorded() {
        let (live, revoked, unknown) = (ApiKeyId::new_v7(), ApiKeyId::new_v7(), ApiKeyId::new_v7());
        let t = |secs| Utc.timestamp_opt(secs, 0).unwrap();
        let s = given(&[
            created(live, "aa"),
            created(revoked, "bb"),
            Event::ApiKeyRevoked { key_id: revoked },
            Event::ApiKeysUsed {
                uses: vec![KeyUse {
                    key_id: live,
                    at: t(100),
                }],
            },
        ]);
        let record = |uses| keys::decide(&s.api_keys, Command::RecordUses { uses });
        assert_eq!(
            record(vec![
                KeyUse {
                    key_id: live,
                    at: t(50)
                },
                KeyUse {
                    key_id: revoked,
                    at: t(200)
                },
                KeyUse {
                    key_id: unknown,
                    at: t(200)
                },
            ]),
            Ok(vec![])
        );
        assert_eq!(
            record(vec![KeyUse {
                key_id: live,
                at: t(150)
            }]),
            Ok(vec![Event::ApiKeysUsed {
                uses: vec![KeyUse {
                    key_id: live,
                    at: t(150)
                }]
            }])
        );
    }
}
