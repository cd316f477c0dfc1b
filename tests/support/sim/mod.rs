//! The deterministic simulation of the monitor: the pure core
//! (`cqlready::monitor::core`) and the real start-up/drain progress
//! (`cassandra::progress`) driven through a generated timeline under a
//! virtual clock, every notification judged by a model of systemd.
//!
//! Shared by `tests/sim.rs` (seeded timelines) and `fuzz/targets.rs` (the
//! fuzzer's bytes as the timeline).

#![allow(dead_code)]

pub mod flips;
pub mod judge;
pub mod systemd;
pub mod timeline;
pub mod world;

use cqlready::cassandra::deliberately_out;
use cqlready::cassandra::node::why_not;
use cqlready::cassandra::progress::Progress;
use cqlready::monitor::core::{Check, Core, Now, Pace};
use cqlready::notify::{message, Field};
use judge::Judge;
use std::time::{Duration, Instant, SystemTime};
use systemd::{End, Job, Systemd};
#[allow(unused_imports)]
pub use timeline::{Bytes, Source, SplitMix, Timeline};
use timeline::{Cql, Term};
use world::World;

/// Steps after which a timeline that has not ended is a failure.
const MAX_STEPS: u64 = 200_000;

/// What one run of a timeline did.
pub struct Run {
    pub violations: Vec<String>,
    /// The readable event list (only when asked for).
    pub log: Vec<String>,
    /// Every notification's time and fields but `STATUS=`: the decisions
    /// a wall-clock step must not change.
    pub decisions: Vec<String>,
    pub checks: u64,
    pub end: Option<End>,
    pub ready: bool,
    pub extensions: u32,
}

struct Inflight {
    started: Duration,
    cql: (bool, Cql),
}

struct Sim<'a> {
    tl: &'a Timeline,
    base: Instant,
    t: Duration,
    core: Core,
    progress: Progress,
    world: World,
    sd: Systemd,
    judge: Judge,
    sigterm_at: Option<Duration>,
    death_at: Option<Duration>,
    inflight: Option<Inflight>,
    extensions: u32,
    steps: u64,
    /// The latest a SIGTERM comes when its trigger never fires.
    fallback_term: Duration,
    run: Run,
    verbose: bool,
}

fn pace(tl: &Timeline) -> Pace {
    Pace {
        interval: tl.interval,
        check: tl.check,
        failures: tl.failures,
        subject: "CQL".into(),
        place: "127.0.0.1:9042".into(),
        extend: tl.extend,
        exit_on_degraded: false,
    }
}

/// The wall clock at virtual time `t`: an arbitrary epoch, stepped by the jumps.
fn wall(tl: &Timeline, t: Duration) -> SystemTime {
    let mut step = 0i64;
    for (at, by) in &tl.jumps {
        if *at <= t {
            step += by;
        }
    }
    let secs = 1_700_000_000i64 + step;
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64) + t
}

impl<'a> Sim<'a> {
    fn new(tl: &'a Timeline, seed: u64, verbose: bool) -> Sim<'a> {
        let base = Instant::now();
        let now = Now {
            mono: base,
            wall: wall(tl, Duration::ZERO),
        };
        let (core, first) = Core::new(pace(tl), tl.watchdog.map(|w| w / 2), now);
        let mut sim = Sim {
            tl,
            base,
            t: Duration::ZERO,
            core,
            progress: Progress::new(tl.extend),
            world: World::new(tl, seed),
            sd: Systemd::new(tl.start_timeout, tl.stop_timeout),
            judge: Judge::default(),
            sigterm_at: match tl.term {
                Term::At(t) => Some(t),
                _ => None,
            },
            death_at: tl.crash,
            inflight: None,
            extensions: 0,
            steps: 0,
            fallback_term: tl.boot.iter().map(|s| s.len).sum::<Duration>() + tl.extend * 4,
            run: Run {
                violations: Vec::new(),
                log: Vec::new(),
                decisions: Vec::new(),
                checks: 0,
                end: None,
                ready: false,
                extensions: 0,
            },
            verbose,
        };
        sim.deliver(vec![first]);
        sim
    }

    fn now(&self) -> Now {
        Now {
            mono: self.base + self.t,
            wall: wall(self.tl, self.t),
        }
    }

    fn log(&mut self, what: impl FnOnce() -> String) {
        if self.verbose {
            let line = format!("  {:>10.3}s  {}", self.t.as_secs_f64(), what());
            self.run.log.push(line);
        }
    }

    /// The next moment something happens.
    fn next_time(&self) -> Duration {
        let wake = match &self.inflight {
            Some(f) => f.started + self.latency(f.cql),
            None => self.core.wake_at().saturating_duration_since(self.base),
        };
        let term = match self.sd.job {
            Job::Start | Job::Running => Some(self.sigterm_at.unwrap_or(self.fallback_term)),
            _ => None,
        };
        [Some(wake), term, self.death_at, self.sd.deadline]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(wake)
            .max(self.t)
    }

    fn latency(&self, (_, cql): (bool, Cql)) -> Duration {
        match cql {
            Cql::Hang => self.tl.timeout,
            _ => Duration::from_millis(1),
        }
    }

    /// Runs the timeline to its end.
    fn go(mut self) -> Run {
        while self.sd.end.is_none() {
            self.steps += 1;
            if self.steps > MAX_STEPS {
                self.run
                    .violations
                    .push("never ended: the timeline never ended".into());
                break;
            }
            self.t = self.next_time();
            self.step();
        }
        self.run.end = self.sd.end.clone();
        self.run.ready = self.sd.ready > 0;
        self.run.extensions = self.extensions;
        self.run.violations.append(&mut self.judge.violations);
        self.run
    }

    fn step(&mut self) {
        let t = self.t;
        if self.death_at.is_some_and(|d| d <= t) {
            self.log(|| "the JVM exits (VM death)".into());
            let out = self.core.stop("JVM shutting down", self.now());
            self.deliver(out);
            self.sd.exited();
            self.log(|| "the main process is gone".into());
        } else if self.sd.deadline.is_some_and(|d| d <= t) {
            self.timed_out();
        } else if self.sd.job != Job::Stop
            && self.sd.job != Job::Done
            && self.sigterm_at.unwrap_or(self.fallback_term) <= t
        {
            self.sd.sigterm(t);
            let exit = self.world.sigterm(t, self.tl);
            self.death_at = Some(self.death_at.map_or(exit, |d| d.min(exit)));
            let deadline = self.sd.deadline;
            self.log(|| format!("SIGTERM (stop job, deadline {deadline:?})"));
        } else if let Some(f) = self.inflight.take() {
            if f.started + self.latency(f.cql) <= t {
                self.complete(f);
            } else {
                self.inflight = Some(f);
            }
        } else if self.core.next_check() <= self.base + t {
            let cql = self.world.cql(t);
            self.inflight = Some(Inflight { started: t, cql });
        } else {
            let out = self.core.tick(self.now());
            self.deliver(out);
        }
    }

    fn timed_out(&mut self) {
        let job = self.sd.job;
        let (t, began, extend) = (self.t, self.sd.began, self.tl.extend);
        if let Some(since) = self.world.moving_since(t) {
            let from = since.max(began);
            let outage = self
                .tl
                .outages
                .iter()
                .any(|(a, len)| *a < t && *a + *len + extend > t);
            if self.judge.checked_between(from, t) && !outage {
                self.judge.violations.push(format!(
                    "cut short: the {job:?} job timed out at {t:?}, moving since {from:?}"
                ));
            }
        }
        self.log(|| format!("{job:?} job timed out"));
        self.sd.timed_out();
    }

    /// A check that began at `f.started` ends now.
    fn complete(&mut self, f: Inflight) {
        let t = self.t;
        let mode = self.world.mode(t);
        let (transport, cql) = f.cql;
        let e = match cql {
            Cql::Answer => None,
            Cql::Refuse => Some("connect: Connection refused (os error 111)".to_string()),
            Cql::Hang => Some("timed out waiting for SUPPORTED".to_string()),
            Cql::Reset => Some("i/o: Connection reset by peer (os error 104)".to_string()),
        };
        let ran = self.world.transport_ran;
        let verdict = match (e, mode) {
            (Some(e), _) => Err(why_not(mode, Some(transport), ran, None, &e)),
            (None, Some("NORMAL")) => Ok(Some(5)),
            (None, m) => Err(format!("CQL answers but Cassandra is {}", m.unwrap_or("?"))),
        };
        let signals = self.world.read(t);
        let inst = self.base + t;
        self.progress.observe(inst, signals);
        let check = Check {
            started: self.base + f.started,
            verdict,
            progress: self.progress.status(inst),
            keep_alive: mode.is_some_and(deliberately_out),
        };
        self.run.checks += 1;
        self.judge.check_done(t, &check);
        self.log(|| format!("check: {:?}, progress {:?}", check.verdict, check.progress));
        let out = self.core.checked(check, self.now());
        self.deliver(out);
    }

    /// Sends the core's messages through the (possibly failing) socket.
    fn deliver(&mut self, out: Vec<Vec<Field>>) {
        let t = self.t;
        for fields in out {
            let ok = !self
                .tl
                .outages
                .iter()
                .any(|(a, len)| *a <= t && t < *a + *len);
            let now = self.now();
            self.core.sent(&fields, ok, now);
            let kinds: Vec<&Field> = fields
                .iter()
                .filter(|f| !matches!(f, Field::Status(_)))
                .collect();
            self.run.decisions.push(format!("{t:?} {kinds:?} {ok}"));
            self.log(|| {
                format!(
                    "{} {}",
                    if ok { "sent" } else { "LOST" },
                    message(&fields).replace('\n', " | ")
                )
            });
            if ok {
                self.arrived(&fields);
            }
        }
    }

    /// A datagram reached systemd.
    fn arrived(&mut self, fields: &[Field]) {
        let t = self.t;
        let healthy = self.core.state() == cqlready::status::model::State::Ready;
        let wrong = self.sd.receive(t, fields);
        self.judge.violations.extend(wrong);
        for f in fields {
            match f {
                Field::Ready => {
                    if let Term::AfterReady(d) = self.tl.term {
                        self.sigterm_at.get_or_insert(t + d);
                    }
                }
                Field::ExtendTimeout(n) => {
                    self.extensions += 1;
                    if let Term::AfterExtend(k, d) = self.tl.term {
                        if k == self.extensions {
                            self.sigterm_at.get_or_insert(t + d);
                        }
                    }
                    self.judge
                        .extension(t, *n, self.world.moved_at, self.tl.extend);
                }
                _ => {}
            }
        }
        self.judge.arrived(t, fields, healthy, self.sd.job);
    }
}

/// Runs `tl` (`seed` drives the world's counters).
pub fn simulate(tl: &Timeline, seed: u64, verbose: bool) -> Run {
    Sim::new(tl, seed, verbose).go()
}

/// How a timeline that kept every rule went.
#[derive(Clone, Debug)]
pub struct Passed {
    pub checks: u64,
    pub end: Option<End>,
    pub ready: bool,
    pub extensions: u32,
}

/// Runs `tl` and judges it: how it went, or the report of a failing
/// timeline (its seed, the timeline, what broke and the event list).
pub fn check_timeline(tl: &Timeline, seed: u64) -> Result<Passed, String> {
    let run = simulate(tl, seed, false);
    let mut wrong = run.violations;
    if !tl.jumps.is_empty() {
        let calm = Timeline {
            jumps: Vec::new(),
            ..tl.clone()
        };
        let other = simulate(&calm, seed, false);
        if let Some(i) = (0..run.decisions.len().max(other.decisions.len()))
            .find(|&i| run.decisions.get(i) != other.decisions.get(i))
        {
            wrong.push(format!(
                "clock step: a wall-clock step changed a decision: {:?} instead of {:?}",
                run.decisions.get(i),
                other.decisions.get(i)
            ));
        }
    }
    if wrong.is_empty() {
        return Ok(Passed {
            checks: run.checks,
            end: run.end,
            ready: run.ready,
            extensions: run.extensions,
        });
    }
    let log = simulate(tl, seed, true).log;
    let shown = &log[log.len().saturating_sub(400)..];
    Err(format!(
        "timeline {seed:#x} failed (replay: CQLREADY_SIM_SEED={seed:#x} cargo test --test sim)\n{tl}violations:\n  {}\nevents{}:\n{}",
        wrong.join("\n  "),
        if shown.len() < log.len() { " (the last 400)" } else { "" },
        shown.join("\n")
    ))
}

/// The timeline of `seed`, judged.
pub fn check_seed(seed: u64) -> Result<Passed, String> {
    let tl = Timeline::generate(&mut SplitMix(seed));
    check_timeline(&tl, seed)
}
