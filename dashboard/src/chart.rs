//! Chart geometry without a browser: linear scales, "nice" axis ticks, and SVG path data.

/// Maps a domain interval linearly onto a range of pixels (the range may run backwards, as the
/// y axis does).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub d0: f64,
    pub d1: f64,
    pub r0: f64,
    pub r1: f64,
}

impl Scale {
    pub fn new(domain: (f64, f64), range: (f64, f64)) -> Self {
        Scale { d0: domain.0, d1: domain.1, r0: range.0, r1: range.1 }
    }

    pub fn map(&self, v: f64) -> f64 {
        let span = self.d1 - self.d0;
        if span == 0.0 {
            return (self.r0 + self.r1) / 2.0;
        }
        self.r0 + (v - self.d0) / span * (self.r1 - self.r0)
    }

    /// The domain value at a pixel position.
    pub fn invert(&self, px: f64) -> f64 {
        let span = self.r1 - self.r0;
        if span == 0.0 {
            return self.d0;
        }
        self.d0 + (px - self.r0) / span * (self.d1 - self.d0)
    }
}

/// A step of 1, 2 or 5 times a power of ten that divides `span` into about `count` intervals.
pub fn nice_step(span: f64, count: usize) -> f64 {
    if !(span.is_finite() && span > 0.0) || count == 0 {
        return 1.0;
    }
    let raw = span / count as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let residual = raw / magnitude;
    // Round to the nearest of 1, 2, 5, 10 (geometrically), so the tick count stays near `count`.
    let nice = if residual < 1.5 {
        1.0
    } else if residual < 3.0 {
        2.0
    } else if residual < 7.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// The y domain for values up to `max`: from zero to the first nice tick at or above `max`
/// (at least 1, so an idle chart still has an axis), and the ticks on it.
pub fn y_axis(max: f64, count: usize) -> (f64, Vec<f64>) {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let step = nice_step(max, count);
    let top = (max / step).ceil() * step;
    let n = (top / step).round() as usize;
    let ticks = (0..=n).map(|i| i as f64 * step).collect();
    (top, ticks)
}

/// Time ticks (unix ms) every 1, 2, 5, 10, 15 or 30 seconds or minutes, about `count` of them.
pub fn time_ticks(from_ms: i64, to_ms: i64, count: usize) -> Vec<i64> {
    const STEPS_S: [i64; 12] = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800];
    if to_ms <= from_ms || count == 0 {
        return Vec::new();
    }
    let span_s = (to_ms - from_ms) / 1000;
    let step = STEPS_S.iter().copied().find(|s| span_s / s <= count as i64).unwrap_or(3600) * 1000;
    let first = from_ms.div_euclid(step) * step + if from_ms.rem_euclid(step) == 0 { 0 } else { step };
    (0..).map(|i| first + i * step).take_while(|t| *t <= to_ms).collect()
}

/// SVG path data for a polyline; `None` values break the line.
pub fn path(points: impl IntoIterator<Item = (f64, Option<f64>)>, x: &Scale, y: &Scale) -> String {
    let mut d = String::new();
    let mut pen_down = false;
    for (px, py) in points {
        match py {
            Some(v) if v.is_finite() => {
                let cmd = if pen_down { 'L' } else { 'M' };
                d.push_str(&format!("{cmd}{:.1},{:.1}", x.map(px), y.map(v)));
                pen_down = true;
            }
            _ => pen_down = false,
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_map_and_invert() {
        let y = Scale::new((0.0, 100.0), (200.0, 0.0));
        assert_eq!(y.map(0.0), 200.0);
        assert_eq!(y.map(25.0), 150.0);
        assert_eq!(y.invert(150.0), 25.0);
        let flat = Scale::new((5.0, 5.0), (0.0, 10.0));
        assert_eq!(flat.map(5.0), 5.0);
    }

    #[test]
    fn nice_ticks_cover_the_maximum() {
        assert_eq!(nice_step(100.0, 5), 20.0);
        assert_eq!(nice_step(7.0, 5), 1.0);
        assert_eq!(nice_step(0.03, 3), 0.01);
        let (top, ticks) = y_axis(87.0, 4);
        assert_eq!(top, 100.0);
        assert_eq!(ticks, vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        let (top, ticks) = y_axis(0.0, 4);
        assert_eq!((top, ticks.len()), (1.0, 6));
        let (top, _) = y_axis(1234.0, 5);
        assert_eq!(top, 1400.0);
    }

    #[test]
    fn time_ticks_fall_on_round_times() {
        // 15 minutes, about 6 ticks: every 5 minutes... rounded to the step after `from`.
        let from = 1_000_000_123;
        let to = from + 15 * 60 * 1000;
        let ticks = time_ticks(from, to, 6);
        assert!(ticks.iter().all(|t| t % 300_000 == 0), "{ticks:?}");
        assert!(ticks.len() >= 3 && ticks.len() <= 6);
        assert!(ticks[0] >= from && *ticks.last().unwrap() <= to);
        assert_eq!(time_ticks(0, 10_000, 5), vec![0, 2000, 4000, 6000, 8000, 10_000]);
        assert!(time_ticks(10, 10, 5).is_empty());
    }

    #[test]
    fn paths_break_at_gaps() {
        let x = Scale::new((0.0, 2.0), (0.0, 20.0));
        let y = Scale::new((0.0, 10.0), (10.0, 0.0));
        let d = path([(0.0, Some(0.0)), (1.0, None), (2.0, Some(10.0))], &x, &y);
        assert_eq!(d, "M0.0,10.0M20.0,0.0");
        let d = path([(0.0, Some(0.0)), (1.0, Some(5.0))], &x, &y);
        assert_eq!(d, "M0.0,10.0L10.0,5.0");
    }
}
