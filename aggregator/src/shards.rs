//! Which ClickHouse shard holds each stream partition, and the node this
//! instance writes it through.
//!
//! Every row of a partition lives on one shard: the one the `Distributed`
//! tables' sharding key (`partition`) maps it to. ClickHouse takes the key
//! modulo the shards' total weight and gives each shard as many
//! consecutive slots as its weight, in the order of `remote_servers`
//! ([`Layout`]). The aggregator writes a partition's batches into the
//! local tables of a node of that shard (through the node's
//! `events_input`), and reads the partition's marks, lookups and recovery
//! sources there: the exactly-once protocol runs within one shard as it
//! does on a single server, and no write has to travel between shards.
//!
//! At start-up every configured node is asked which shard it is a replica
//! of. A partition whose shard no configured node reaches, or a shard
//! holding rows of a partition it does not own (shards added, removed or
//! reordered without moving the data), stops the aggregator with the
//! reason: writing on would split a partition over two shards, whose
//! marks would then disagree.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::store::{Store, StoreError};

/// How `Distributed` tables map a sharding key to a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The shard (`shard_num`) of each slot.
    slots: Vec<u32>,
}

impl Layout {
    /// The layout of `shards`, `(shard_num, weight)` in `remote_servers`
    /// order; `None` when every weight is 0.
    pub fn new(shards: &[(u32, u32)]) -> Option<Layout> {
        let slots: Vec<u32> = shards
            .iter()
            .flat_map(|&(shard, weight)| std::iter::repeat_n(shard, weight as usize))
            .collect();
        (!slots.is_empty()).then_some(Layout { slots })
    }

    /// The shard whose local tables hold `partition`'s rows.
    pub fn owner(&self, partition: u16) -> u32 {
        self.slots[usize::from(partition) % self.slots.len()]
    }
}

/// The node each owned partition is written through.
#[derive(Clone)]
pub struct Shards {
    by_partition: BTreeMap<u16, Store>,
    /// Every configured node, one per shard.
    nodes: Vec<Store>,
}

impl Shards {
    /// Finds the node of each owned partition's shard among the configured
    /// ones (`aggregator.shard_urls`, else `clickhouse.url`) and checks
    /// that no shard holds rows of another's partition. `Err` when
    /// ClickHouse does not answer (worth retrying); `Ok(Err(reason))` when
    /// the configuration or the data's placement is wrong.
    pub async fn connect(config: &Config) -> Result<Result<Shards, String>, StoreError> {
        let ch = &config.clickhouse;
        let partitions = config.owned_partitions();
        if ch.cluster.is_empty() {
            let store = Store::new(ch);
            let by_partition = partitions.iter().map(|&p| (p, store.clone())).collect();
            return Ok(Ok(Shards {
                by_partition,
                nodes: vec![store],
            }));
        }
        let (key, urls) = if config.aggregator.shard_urls.is_empty() {
            ("clickhouse.url", vec![ch.url.clone()])
        } else {
            (
                "aggregator.shard_urls",
                config.aggregator.shard_urls.clone(),
            )
        };
        let cluster = &ch.cluster;
        let mut nodes: BTreeMap<u32, Store> = BTreeMap::new();
        let mut weights: Option<Vec<(u32, u32)>> = None;
        for url in &urls {
            let store = Store::at(ch, url);
            let Some(shard) = store.local_shard().await? else {
                return Ok(Err(format!(
                    "{key}: {url} is not a node of cluster {cluster} (its system.clusters lists no replica of it as local)"
                )));
            };
            let found = store.shard_weights().await?;
            match &weights {
                Some(first) if *first != found => {
                    return Ok(Err(format!(
                        "{key}: the nodes disagree on the shards of cluster {cluster} ({} has {found:?}, {} has {first:?})",
                        url, urls[0]
                    )));
                }
                _ => weights = Some(found),
            }
            if let Some(other) = nodes.insert(shard, store) {
                return Ok(Err(format!(
                    "{key}: {url} and {} are both nodes of shard {shard}; name one node per shard",
                    other.url
                )));
            }
        }
        let Some(layout) = weights.as_deref().and_then(Layout::new) else {
            return Ok(Err(format!(
                "cluster {cluster} has no shard of positive weight"
            )));
        };
        let mut by_partition = BTreeMap::new();
        for p in partitions {
            let shard = layout.owner(p);
            let Some(store) = nodes.get(&shard) else {
                return Ok(Err(format!(
                    "{key}: partition {p} lives on shard {shard} of cluster {cluster}, and no node of that shard is configured"
                )));
            };
            by_partition.insert(p, store.clone());
        }
        for (&shard, store) in &nodes {
            for p in store.partitions_held().await? {
                let owner = layout.owner(p);
                if owner != shard {
                    return Ok(Err(format!(
                        "shard {shard} ({}) holds rows of partition {p}, which cluster {cluster} places on shard {owner}: \
                         shards were added, removed or reordered without moving the data (docs/scaling.md)",
                        store.url
                    )));
                }
            }
        }
        Ok(Ok(Shards {
            by_partition,
            nodes: nodes.into_values().collect(),
        }))
    }

    /// The node `partition` is written through.
    pub fn store(&self, partition: u16) -> &Store {
        self.by_partition
            .get(&partition)
            .expect("every owned partition has a node")
    }

    /// The owned partitions with their nodes.
    pub fn partitions(&self) -> impl Iterator<Item = (u16, &Store)> {
        self.by_partition.iter().map(|(p, s)| (*p, s))
    }

    /// Every node this instance writes through, one per shard.
    pub fn nodes(&self) -> &[Store] {
        &self.nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_the_shards_weights_in_order() {
        let even = Layout::new(&[(1, 1), (2, 1)]).unwrap();
        let owners: Vec<u32> = (0..6).map(|p| even.owner(p)).collect();
        assert_eq!(owners, [1, 2, 1, 2, 1, 2]);
        // Weights give consecutive slots, shard by shard; a shard of
        // weight 0 gets none.
        let weighted = Layout::new(&[(1, 2), (2, 0), (3, 1)]).unwrap();
        let owners: Vec<u32> = (0..6).map(|p| weighted.owner(p)).collect();
        assert_eq!(owners, [1, 1, 3, 1, 1, 3]);
        assert_eq!(Layout::new(&[(1, 0)]), None);
        assert_eq!(Layout::new(&[(1, 1)]).unwrap().owner(1023), 1);
    }
}
