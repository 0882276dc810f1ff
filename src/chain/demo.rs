//! Demo mode: with no TRON node configured, `serve` starts a devnet in its own process (the
//! java-tron HTTP subset of [`crate::devnet`]) with a funded demo supplier, and delegates on
//! it over HTTP like on any node. The README's quickstart runs on it.

use crate::chain::tron::{EnergyTotals, SecretKey, TronClient};
use crate::devnet::{AccountSeed, Devnet, DevnetConfig, InProcess, StateStore};
use crate::settings::Settings;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// The demo supplier wallet of the in-process devnet (vector A's address of the TRON key
/// derivation tests).
pub const DEMO_SUPPLIER: &str = "TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1";
/// Its key: a *published* test key (tronpy's test suite, vector A). Devnet only — never fund
/// it on a real network.
const DEMO_SUPPLIER_KEY: &str = "279ff36d9bf9f305af3280034bb4187c6dd299bac6b26a3c20b999c7c0d50e6e";
/// The renter address of the README's examples, activated on the in-process devnet.
pub const DEMO_RENTER: &str = "TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2";

/// The in-process devnet and the client that delegates on it.
pub struct Demo {
    pub client: Arc<TronClient>,
    pub devnet: InProcess,
}

/// Starts the devnet (its chain kept in the data dir, restored on the next start) with the
/// demo supplier staked for `settings.chain.demo.supplier_energy` and the demo renter
/// activated, and a client for it holding the supplier's key beside any configured ones.
pub fn start(settings: &Settings) -> anyhow::Result<Demo> {
    let demo = &settings.chain.demo;
    let key = SecretKey::from_hex(DEMO_SUPPLIER_KEY).expect("demo key is valid");
    let mut config = DevnetConfig {
        block_interval_ms: demo.block_ms,
        // It stands in for a node on another machine: its work waits like the saga's.
        nice: settings.saga_nice,
        ..Default::default()
    };
    config.faults.fail_rate = demo.failure_rate;
    let totals = EnergyTotals {
        limit: config.total_energy_limit,
        weight: config.total_energy_weight,
    };
    // Enough stake for the demo energy, with room for per-delegation rounding.
    let stake = totals
        .energy_to_sun(demo.supplier_energy.max(1))
        .map_err(|e| anyhow::anyhow!("--demo-supplier-energy is too large for the devnet: {e}"))?
        + 1_000_000_000;
    config.accounts = vec![
        AccountSeed {
            address: Some(key.address().to_base58()),
            balance_sun: 1_000_000_000,
            energy_stake_sun: stake as i64,
            ..Default::default()
        },
        AccountSeed {
            address: Some(DEMO_RENTER.to_owned()),
            balance_sun: 1_000_000,
            ..Default::default()
        },
    ];
    let data_dir = &settings.store.data_dir;
    let store = StateStore {
        dir: data_dir.join("devnet"),
        legacy_json: Some(data_dir.join("devnet-state.json")),
    };
    let devnet = Devnet::start_with(config, "127.0.0.1:0", Some(store))
        .context("starting the in-process TRON devnet")?
        .spawn();
    tracing::info!(
        node = %devnet.url,
        block_ms = demo.block_ms,
        supplier = DEMO_SUPPLIER,
        "no TRON node configured (FLASHRENT_TRON_NODES): started an in-process TRON devnet with a funded demo supplier; orders are delegated on it over HTTP"
    );
    let mut tron = settings.tron_config(vec![devnet.url.clone()]);
    tron.block_interval = Duration::from_millis(demo.block_ms);
    let mut keys = settings.secrets.supplier_keys.clone();
    keys.push(key);
    let client = TronClient::new(tron, keys).context("the in-process devnet's client")?;
    Ok(Demo {
        client: Arc::new(client),
        devnet,
    })
}
