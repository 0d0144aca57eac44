//! Partitions of the session stream: their stream and dead-letter names, and which partition a
//! call's reports go to (crc32 of the call id, so one call's reports stay in order on one stream).

/// The session stream's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitions {
    base: String,
    dlq_base: String,
    count: u32,
    tagged: bool,
}

impl Partitions {
    /// `count` partitions of `stream`. One partition off a cluster keeps today's names (`stream`,
    /// `dlq`); otherwise partition i is `<stream>:{i}` with its dead letters in `<dlq>:{i}`: the hash
    /// tag puts both in one cluster slot, so dead-lettering stays one atomic MULTI.
    pub fn new(stream: &str, dlq: &str, count: u32, cluster: bool) -> Self {
        let count = count.max(1);
        Partitions {
            base: stream.to_string(),
            dlq_base: dlq.to_string(),
            count,
            tagged: count > 1 || cluster,
        }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// The stream of partition `i`.
    pub fn stream(&self, i: u32) -> String {
        if self.tagged {
            format!("{}:{{{i}}}", self.base)
        } else {
            self.base.clone()
        }
    }

    /// The dead-letter stream of partition `i`.
    pub fn dlq(&self, i: u32) -> String {
        if self.tagged {
            format!("{}:{{{i}}}", self.dlq_base)
        } else {
            self.dlq_base.clone()
        }
    }

    /// Every partition's stream.
    pub fn streams(&self) -> Vec<String> {
        (0..self.count).map(|i| self.stream(i)).collect()
    }

    /// Every partition's dead-letter stream.
    pub fn dlqs(&self) -> Vec<String> {
        (0..self.count).map(|i| self.dlq(i)).collect()
    }

    /// The partition of a call: `crc32(call_id) mod N` (zlib's CRC-32, as `zlib.crc32` in Python).
    pub fn of_call(&self, call_id: &str) -> u32 {
        crc32fast::hash(call_id.as_bytes()) % self.count
    }

    /// The stream a call's reports are published to.
    pub fn stream_of_call(&self, call_id: &str) -> String {
        self.stream(self.of_call(call_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_partition_keeps_todays_names() {
        let p = Partitions::new(
            "call-insights:sessions",
            "call-insights:sessions:dlq",
            1,
            false,
        );
        assert_eq!(p.streams(), vec!["call-insights:sessions"]);
        assert_eq!(p.dlq(0), "call-insights:sessions:dlq");
        assert_eq!(p.of_call("anything"), 0);
    }

    #[test]
    fn partitions_are_hash_tagged_and_share_a_slot_with_their_dlq() {
        let p = Partitions::new("s", "s:dlq", 4, false);
        assert_eq!(p.streams(), vec!["s:{0}", "s:{1}", "s:{2}", "s:{3}"]);
        assert_eq!(p.dlq(2), "s:dlq:{2}");
        let c = Partitions::new("s", "s:dlq", 1, true);
        assert_eq!(c.stream(0), "s:{0}");
        assert_eq!(c.dlq(0), "s:dlq:{0}");
    }

    #[test]
    fn a_call_maps_like_pythons_zlib_crc32() {
        // python3 -c "import zlib; print(hex(zlib.crc32(b'call-0001')))" prints 0xcf0f2017.
        let p = Partitions::new("s", "s:dlq", 4, false);
        assert_eq!(crc32fast::hash(b"call-0001"), 0xcf0f_2017);
        assert_eq!(p.of_call("call-0001"), 3);
        assert_eq!(p.stream_of_call("call-0001"), "s:{3}");
    }
}
