//! A model of systemd's side of a `Type=notify` service, as
//! systemd.service(5) and sd_notify(3) describe it: the start job's
//! `TimeoutStartSec=`, the stop job's `TimeoutStopSec=` armed afresh at
//! SIGTERM, and `EXTEND_TIMEOUT_USEC=N` moving the current job's deadline
//! to N after it arrived, never earlier, and only for the job it arrived in.

use cqlready::notify::Field;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    Start,
    Running,
    Stop,
    Done,
}

/// How the service ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The job's deadline passed (SIGKILL for a stop, SIGTERM for a start).
    Timeout(Job),
    /// The main process exited in this job.
    Exited(Job),
}

pub struct Systemd {
    pub job: Job,
    pub began: Duration,
    /// `None`: infinity.
    pub deadline: Option<Duration>,
    start_timeout: Option<Duration>,
    stop_timeout: Option<Duration>,
    pub ready: u32,
    pub stopping: bool,
    pub end: Option<End>,
}

impl Systemd {
    pub fn new(start_timeout: Option<Duration>, stop_timeout: Option<Duration>) -> Systemd {
        Systemd {
            job: Job::Start,
            began: Duration::ZERO,
            deadline: start_timeout,
            start_timeout,
            stop_timeout,
            ready: 0,
            stopping: false,
            end: None,
        }
    }

    /// One datagram arrives at `t`; what it broke of the protocol, if anything.
    pub fn receive(&mut self, t: Duration, fields: &[Field]) -> Vec<String> {
        let mut wrong = Vec::new();
        for f in fields {
            if self.stopping && !matches!(f, Field::Status(_)) {
                wrong.push(format!("protocol: {f:?} after STOPPING=1"));
            }
            match f {
                Field::Ready => {
                    self.ready += 1;
                    if self.ready > 1 {
                        wrong.push("protocol: READY=1 a second time".into());
                    }
                    if self.job == Job::Start {
                        self.enter(Job::Running, t, None);
                    }
                }
                Field::Stopping => self.stopping = true,
                Field::ExtendTimeout(n) => {
                    if matches!(self.job, Job::Start | Job::Stop) {
                        self.deadline = self.deadline.map(|d| d.max(t + *n));
                    }
                }
                _ => {}
            }
        }
        wrong
    }

    /// `systemctl stop`: SIGTERM, and the stop job's own timeout from now.
    pub fn sigterm(&mut self, t: Duration) {
        if matches!(self.job, Job::Start | Job::Running) {
            self.enter(Job::Stop, t, self.stop_timeout.map(|d| t + d));
        }
    }

    pub fn exited(&mut self) {
        if self.end.is_none() {
            self.end = Some(End::Exited(self.job));
            self.job = Job::Done;
        }
    }

    pub fn timed_out(&mut self) {
        self.end = Some(End::Timeout(self.job));
        self.job = Job::Done;
    }

    fn enter(&mut self, job: Job, t: Duration, deadline: Option<Duration>) {
        self.job = job;
        self.began = t;
        self.deadline = deadline;
    }

    pub fn unit_timeout(&self, job: Job) -> Option<Duration> {
        match job {
            Job::Start => self.start_timeout,
            Job::Stop => self.stop_timeout,
            _ => None,
        }
    }
}
