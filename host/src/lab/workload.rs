//! Turns a scenario into the tasks it submits: arrival times, run times and fairness keys,
//! drawn from one seeded generator per group, so a seed gives the same workload every time and
//! adding a group does not change the others' draws.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::scenario::{Arrival, GroupSpec, RunTime, Scenario};

/// One task the workload submits.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Simulated milliseconds from the start.
    pub at: u64,
    /// Index of its group in the scenario.
    pub group: usize,
    /// Which of the group's keys it carries (0 when the group has one).
    pub key: u32,
    pub run_ms: u64,
}

/// Every task of the scenario, in submission order: by time, then group order, then the order
/// within the group. Its position is its task handle minus one.
pub fn generate(scenario: &Scenario, seed: u64) -> Vec<Submission> {
    let duration = scenario.duration.ms();
    let mut all = Vec::new();
    for (index, group) in scenario.groups.iter().enumerate() {
        // SplitMix-style spreading, so groups of nearby seeds do not share streams.
        let group_seed = seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add((index as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
        let mut rng = StdRng::seed_from_u64(group_seed);
        let mut key = 0u32;
        for at in arrivals(&group.arrival, duration, &mut rng) {
            let run_ms = run_time(&group.run_time, &mut rng);
            all.push(Submission {
                at,
                group: index,
                key,
                run_ms,
            });
            key = (key + 1) % group.keys;
        }
    }
    // Stable: equal times keep group order, then the order within the group.
    all.sort_by_key(|s| (s.at, s.group));
    all
}

/// The fairness key of a group's `key`-th key, as tasks carry it.
pub fn key_name(group: &GroupSpec, key: u32) -> String {
    if group.keys == 1 {
        group.name.clone()
    } else {
        format!("{}/{key}", group.name)
    }
}

fn arrivals(arrival: &Arrival, duration: u64, rng: &mut StdRng) -> Vec<u64> {
    match arrival {
        Arrival::Burst { count, at } => vec![at.ms(); *count as usize],
        Arrival::Steady { every, start, stop } => {
            let stop = stop.map_or(duration, |s| s.ms().min(duration));
            (start.ms()..stop).step_by(every.ms() as usize).collect()
        }
        Arrival::Trickle { mean_gap } => {
            let mut times = Vec::new();
            let mut at = 0.0;
            loop {
                at += exponential(rng, mean_gap.ms() as f64);
                if at >= duration as f64 {
                    break times;
                }
                times.push(at as u64);
            }
        }
        Arrival::OnOff { every, on, off } => {
            let period = on.ms() + off.ms();
            let mut times = Vec::new();
            let mut phase = 0;
            while phase < duration {
                let end = (phase + on.ms()).min(duration);
                times.extend((phase..end).step_by(every.ms() as usize));
                phase += period;
            }
            times
        }
    }
}

fn run_time(run_time: &RunTime, rng: &mut StdRng) -> u64 {
    match run_time {
        RunTime::Fixed { time } => time.ms(),
        RunTime::Uniform { min, max } => rng.random_range(min.ms()..=max.ms()),
        RunTime::Exponential { mean } => (exponential(rng, mean.ms() as f64) as u64).max(1),
    }
}

/// A draw from the exponential distribution with mean `mean`.
fn exponential(rng: &mut StdRng, mean: f64) -> f64 {
    // 1 - u is in (0, 1], so the logarithm is finite.
    let u: f64 = rng.random();
    -mean * (1.0 - u).ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::builtin::builtin_scenario;

    #[test]
    fn same_seed_same_workload_and_ordered() {
        let scenario = builtin_scenario("capabilities").unwrap().unwrap();
        let a = generate(&scenario, 7);
        let b = generate(&scenario, 7);
        let c = generate(&scenario, 8);
        let key = |w: &[Submission]| {
            w.iter()
                .map(|s| (s.at, s.group, s.run_ms))
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c), "a different seed draws other run times");
        assert!(a
            .windows(2)
            .all(|w| (w[0].at, w[0].group) <= (w[1].at, w[1].group)));
        assert!(a.iter().all(|s| s.at < scenario.duration.ms()));
    }

    #[test]
    fn keys_rotate_within_a_group() {
        let scenario = builtin_scenario("sybil").unwrap().unwrap();
        let work = generate(&scenario, 1);
        let sybil: Vec<u32> = work
            .iter()
            .filter(|s| s.group == 2)
            .map(|s| s.key)
            .take(9)
            .collect();
        assert_eq!(sybil, vec![0, 1, 2, 3, 4, 5, 6, 7, 0]);
        assert_eq!(key_name(&scenario.groups[2], 3), "sybil/3");
        assert_eq!(key_name(&scenario.groups[0], 0), "honest-a");
    }
}
