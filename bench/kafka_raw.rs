//! The broker's own speed, as the yardstick of bench/kafka.sh: how fast records can be
//! produced (idempotent, acks=all, as flashrent does) and consumed, with nothing else.
//!
//!   kafka_raw produce BROKERS TOPIC PARTITIONS COUNT SIZE   # prints "produce <records/s>"
//!   kafka_raw consume BROKERS TOPIC                          # prints "consume <records/s> ..."
//!
//! `consume` also counts the commands the records hold (a flashrent record holds the events
//! of every command its writer decided while the previous record was in flight), so that
//! `produce` can be given records the size of one command: the unit a client waits for.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// Extra librdkafka settings from KAFKA_RAW_CONFIG (`k=v,k=v`), to try a broker's knobs.
fn config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for kv in std::env::var("KAFKA_RAW_CONFIG")
        .unwrap_or_default()
        .split(',')
    {
        if let Some((k, v)) = kv.split_once('=') {
            c.set(k, v);
        }
    }
    c
}

async fn produce(brokers: &str, topic: &str, partitions: i32, count: usize, size: usize) {
    let admin: AdminClient<DefaultClientContext> = config(brokers).create().expect("admin");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1))
        .set("retention.ms", "-1")
        .set("retention.bytes", "-1");
    admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .expect("create topic");
    let producer: FutureProducer = config(brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let payload = vec![b'x'; size];
    let started = Instant::now();
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("user-{}", i % 2000);
        let rec = FutureRecord::to(topic)
            .partition((i % partitions as usize) as i32)
            .key(&key)
            .payload(&payload);
        match producer.send_result(rec) {
            Ok(f) => pending.push(f),
            Err((e, _)) => panic!("produce: {e}"),
        }
    }
    for f in pending {
        f.await.expect("delivered").expect("acknowledged");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "produce {:.0} records/s ({count} records of {size} B in {secs:.2} s)",
        count as f64 / secs
    );
}

fn consume(brokers: &str, topic: &str) {
    let consumer: BaseConsumer = config(brokers)
        .set("group.id", "kafka-raw")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = md.topics()[0].partitions().len() as i32;
    let mut total = 0i64;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        total += high;
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let started = Instant::now();
    let (mut n, mut bytes, mut commands) = (0i64, 0usize, 0usize);
    while n < total {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                n += 1;
                let payload = m.payload().unwrap_or_default();
                bytes += payload.len();
                commands += commands_in(payload);
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => panic!("no record within 10 s after {n} of {total}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "consume {:.0} records/s ({n} records, {} B average, {commands} commands, {} B per command, in {secs:.2} s)",
        n as f64 / secs,
        bytes / n.max(1) as usize,
        bytes / commands.max(1)
    );
}

/// How many commands a flashrent record holds: the distinct causations of its events (a
/// claim, with no events, counts as one).
fn commands_in(payload: &[u8]) -> usize {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return 1;
    };
    let causes: std::collections::HashSet<&str> = v["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["causation_id"].as_str())
                .collect()
        })
        .unwrap_or_default();
    causes.len().max(1)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: kafka_raw produce BROKERS TOPIC PARTITIONS COUNT SIZE | consume BROKERS TOPIC";
    match args.get(1).map(String::as_str) {
        Some("produce") if args.len() == 7 => {
            let n = |i: usize| args[i].parse::<usize>().expect(usage);
            produce(&args[2], &args[3], n(4) as i32, n(5), n(6)).await
        }
        Some("consume") if args.len() == 4 => consume(&args[2], &args[3]),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
