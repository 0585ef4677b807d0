//! Anomalies in hourly series (issue 15, first part: the detector, pure and measured).
//!
//! A district's hourly traffic, conversion, cart abandonment or revenue has a daily and a weekly
//! rhythm; an anomaly is what the rhythm does not explain. The method is seasonal and robust
//! throughout (after Hochenbaum, Vallis and Kejariwal's S-H-ESD):
//!
//! 1. **Expected value** of each hour: the median of the same hour of the week over the previous
//!    [`WEEKS`] weeks (two or more needed), else of the same hour of the day over the previous
//!    [`DAYS`] days — medians, so that an earlier anomaly does not bend the baseline.
//! 2. **Residuals** (value − expected; for counts divided by √expected, their Poisson noise, so
//!    quiet and busy hours share one scale), centred and scaled by their median and median
//!    absolute deviation (× 1.4826) over the trailing two weeks.
//! 3. **Spikes and drops**: the generalized ESD test on the scaled residuals of the window looked
//!    at (at most [`MAX_SHARE`] of its points, significance [`ALPHA`]) — each removed point is
//!    tested against the Student-t critical value for what remains.
//!
//! Measured on synthetic series (eight weeks hourly at three traffic levels, the last four looked
//! at; spikes and two-hour drops of 6–10 noise deviations, 48-hour halvings): recall 0.962,
//! precision 0.979 over 265 injected anomalies; 3 false alarms in 13,440 hours of plain rhythm.
//! 4. **Level shifts**: [`SHIFT_HOURS`] or more hours in a row beyond [`SHIFT_Z`] scaled
//!    residuals on one side; reported once, at the onset.
//!
//! Flagged hours next to each other make one anomaly.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Weeks of history the hour-of-week median looks back over.
pub const WEEKS: usize = 4;
/// Days the hour-of-day median looks back over (before two weeks exist).
pub const DAYS: usize = 7;
/// The most anomalies ESD may name, as a share of the window.
pub const MAX_SHARE: f64 = 0.02;
/// The ESD test's significance.
pub const ALPHA: f64 = 0.05;
/// Hours in a row on one side that make a level shift.
pub const SHIFT_HOURS: usize = 6;
/// The scaled residual each of those hours passes.
pub const SHIFT_Z: f64 = 1.5;

/// What kind of anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Spike,
    Drop,
    LevelShift,
}

/// One anomaly: where it starts and ends (hour indexes, inclusive), its kind, the largest scaled
/// residual, and the expected and observed values at its strongest hour.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
    pub score: f64,
    pub expected: f64,
    pub observed: f64,
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// The expected value of every hour (`None` before a day of history).
pub fn expected(series: &[f64]) -> Vec<Option<f64>> {
    (0..series.len())
        .map(|t| {
            let mut weekly: Vec<f64> = (1..=WEEKS).filter_map(|w| t.checked_sub(w * 168)).map(|i| series[i]).collect();
            if weekly.len() >= 2 {
                return Some(median(&mut weekly));
            }
            let mut daily: Vec<f64> = (1..=DAYS).filter_map(|d| t.checked_sub(d * 24)).map(|i| series[i]).collect();
            (!daily.is_empty()).then(|| median(&mut daily))
        })
        .collect()
}

/// Anomalies among the hours `from..` of `series` (the hours before are history only).
/// `counts`: the values are counts, whose noise grows as the square root of their level.
pub fn detect(series: &[f64], from: usize, counts: bool) -> Vec<Anomaly> {
    detect_with(series, from, counts, if counts { 1.0 } else { 1e-9 })
}

/// [`detect`] with the smallest deviation that counts as a unit of noise (`floor`, in the
/// series' units, or in √-units for counts): a sparse series — revenue from a few orders, a rate
/// over few views — has a median deviation of zero, and without a floor any order at all would
/// be an anomaly. Revenue's floor is an order's value; a rate's, a point.
pub fn detect_with(series: &[f64], from: usize, counts: bool, floor: f64) -> Vec<Anomaly> {
    let base = expected(series);
    // Residuals; counts standardized by their Poisson noise (√expected), so that quiet night
    // hours and busy evenings are measured on one scale.
    let resid: Vec<Option<f64>> = series
        .iter()
        .zip(&base)
        .map(|(x, e)| e.map(|e| if counts { (x - e) / e.max(1.0).sqrt() } else { x - e }))
        .collect();
    // Scaled residuals of the window: each by the MAD of the two weeks before it.
    let mut z: Vec<(usize, f64)> = Vec::new();
    for t in from..series.len() {
        let Some(r) = resid[t] else { continue };
        let lo = t.saturating_sub(14 * 24);
        let mut past: Vec<f64> = resid[lo..t].iter().flatten().copied().collect();
        let centre = median(&mut past.clone());
        let mut dev: Vec<f64> = past.iter_mut().map(|x| (*x - centre).abs()).collect();
        let mad = 1.4826 * median(&mut dev);
        z.push((t, (r - centre) / mad.max(floor)));
    }
    let mut flagged: Vec<(usize, f64)> = Vec::new();
    // Level shifts: runs of hours beyond SHIFT_Z on one side.
    let mut in_shift = vec![false; series.len()];
    let mut k = 0;
    while k < z.len() {
        let sign = z[k].1.signum();
        let mut j = k;
        while j < z.len() && z[j].1.abs() > SHIFT_Z && z[j].1.signum() == sign && z[j].0 == z[k].0 + (j - k) {
            j += 1;
        }
        if j - k >= SHIFT_HOURS {
            for (t, _) in &z[k..j] {
                in_shift[*t] = true;
            }
            k = j;
        } else {
            k += 1;
        }
    }
    // Generalized ESD on the rest.
    let mut rest: Vec<(usize, f64)> = z.iter().copied().filter(|(t, _)| !in_shift[*t]).collect();
    let max = ((rest.len() as f64 * MAX_SHARE).ceil() as usize).max(1);
    let mut removed: Vec<(usize, f64)> = Vec::new();
    let mut last_significant = 0;
    for i in 1..=max {
        let n = rest.len();
        if n < 3 {
            break;
        }
        let mut vals: Vec<f64> = rest.iter().map(|x| x.1).collect();
        let centre = median(&mut vals);
        let mut dev: Vec<f64> = rest.iter().map(|x| (x.1 - centre).abs()).collect();
        // The scaled residuals are in units of noise already: their spread is about 1, and a
        // window of identical values (a quiet series) must not make every other one extreme.
        let mad = (1.4826 * median(&mut dev)).max(1.0);
        let (k, (t, v)) = rest
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| (a.1.1 - centre).abs().total_cmp(&(b.1.1 - centre).abs()))
            .expect("points");
        let r = (v - centre).abs() / mad;
        let nf = n as f64;
        let p = 1.0 - ALPHA / (2.0 * nf);
        let tq = StudentsT::new(0.0, 1.0, nf - 2.0).map(|d| d.inverse_cdf(p)).unwrap_or(f64::INFINITY);
        let lambda = (nf - 1.0) * tq / ((nf - 2.0 + tq * tq) * nf).sqrt();
        removed.push((t, v));
        rest.remove(k);
        if r > lambda {
            last_significant = i;
        }
    }
    flagged.extend(removed.into_iter().take(last_significant));
    flagged.extend(z.iter().copied().filter(|(t, _)| in_shift[*t]));
    flagged.sort_by_key(|x| x.0);
    // Neighbouring hours make one anomaly.
    let mut out: Vec<Anomaly> = Vec::new();
    for (t, score) in flagged {
        let kind = if in_shift[t] {
            Kind::LevelShift
        } else if score > 0.0 {
            Kind::Spike
        } else {
            Kind::Drop
        };
        let (expected, observed) = (base[t].unwrap_or(0.0), series[t]);
        match out.last_mut() {
            Some(a) if t <= a.end + 1 && (a.kind == kind || kind != Kind::LevelShift && a.kind != Kind::LevelShift) => {
                a.end = t;
                if score.abs() > a.score.abs() {
                    (a.score, a.expected, a.observed) = (score, expected, observed);
                }
            }
            _ => out.push(Anomaly { start: t, end: t, kind, score, expected, observed }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The rhythm's mean at hour `t`: a daily cycle peaking at 15:00 and busier weekends.
    fn mean_at(level: f64, t: usize) -> f64 {
        let hour = (t % 24) as f64;
        let day = (t / 24) % 7;
        let daily = 1.0 + 0.8 * (std::f64::consts::TAU * (hour - 15.0) / 24.0).cos();
        let weekly = if day >= 5 { 1.4 } else { 1.0 };
        level * daily * weekly
    }

    /// Eight weeks of hourly traffic with a daily and a weekly rhythm and count noise.
    fn rhythm(rng: &mut impl Rng, level: f64) -> Vec<f64> {
        (0..8 * 168)
            .map(|t| {
                let mean = mean_at(level, t);
                // Normal approximation of Poisson noise.
                let u: f64 = rng.random::<f64>().max(1e-12);
                let v: f64 = rng.random();
                let n = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
                (mean + n * mean.sqrt()).max(0.0).round()
            })
            .collect()
    }

    #[derive(Debug, Clone, Copy)]
    struct Injected {
        at: usize,
        kind: Kind,
    }

    /// Injects anomalies into the last four weeks: spikes, drops and level shifts.
    fn inject(rng: &mut impl Rng, s: &mut [f64], mean: impl Fn(usize) -> f64) -> Vec<Injected> {
        let mut out = Vec::new();
        let from = 4 * 168;
        let mut t = from + rng.random_range(10..40);
        while t < s.len() - 60 {
            let kind = match rng.random_range(0..10) {
                0..=4 => Kind::Spike,
                5..=8 => Kind::Drop,
                _ => Kind::LevelShift,
            };
            // Sizes relative to the noise at that hour (σ = √mean): 6 to 10 σ — what a count
            // can show at all; a drop needs an hour busy enough to fall that far.
            let sigma = mean(t).sqrt();
            let size = sigma * rng.random_range(6.0..10.0);
            match kind {
                Kind::Spike => s[t] += size,
                Kind::Drop if mean(t) < size => {
                    t += 1;
                    continue;
                }
                Kind::Drop => {
                    s[t] = (s[t] - size).max(0.0);
                    s[t + 1] = (s[t + 1] - size).max(0.0);
                }
                Kind::LevelShift => {
                    for x in &mut s[t..t + 48] {
                        *x *= 0.5;
                    }
                }
            }
            out.push(Injected { at: t, kind });
            t += if kind == Kind::LevelShift { 48 } else { 0 } + rng.random_range(40..90);
        }
        out
    }

    #[test]
    fn the_ordinary_rhythm_is_not_flagged() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut false_alarms = 0;
        for _ in 0..20 {
            let s = rhythm(&mut rng, 100.0);
            false_alarms += detect(&s, 4 * 168, true).len();
        }
        // 20 series × 672 hours looked at: at most one false alarm in about 2,700 hours (a
        // three-sigma rule flags about 18 per series here).
        println!("plain rhythm: {false_alarms} false alarms in 13,440 hours");
        assert!(false_alarms <= 5, "{false_alarms} anomalies in plain rhythm");
    }

    #[test]
    fn injected_spikes_drops_and_shifts_are_found_with_precision_and_recall_of_ninety_percent() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let (mut injected, mut found, mut detected, mut true_detected) = (0, 0, 0, 0);
        for level in [30.0, 100.0, 400.0] {
            for _ in 0..10 {
                let mut s = rhythm(&mut rng, level);
                let truth = inject(&mut rng, &mut s, |t| mean_at(level, t));
                let anomalies = detect(&s, 4 * 168, true);
                injected += truth.len();
                detected += anomalies.len();
                let near = |a: &Anomaly, i: &Injected| {
                    let (lo, hi) = (i.at.saturating_sub(2), i.at + if i.kind == Kind::LevelShift { 12 } else { 3 });
                    a.start <= hi && a.end >= lo
                };
                found += truth.iter().filter(|i| anomalies.iter().any(|a| near(a, i))).count();
                // A detection is true when it is near an injected anomaly or inside a shift.
                let inside =
                    |a: &Anomaly, i: &Injected| i.kind == Kind::LevelShift && a.start >= i.at && a.start < i.at + 48;
                true_detected += anomalies.iter().filter(|a| truth.iter().any(|i| near(a, i) || inside(a, i))).count();
            }
        }
        let recall = found as f64 / injected as f64;
        let precision = true_detected as f64 / detected.max(1) as f64;
        println!("anomalies: {injected} injected, {detected} detected; recall {recall:.3}, precision {precision:.3}");
        assert!(recall >= 0.9 && precision >= 0.9, "recall {recall}, precision {precision}");
    }
}
