//! The PNG chart: added CPU per request and p99 latency per configuration,
//! as horizontal bars. Text is drawn with DejaVu Sans (installed by setup)
//! through plotters' ab_glyph backend: no system libraries.

use super::report::Row;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;

const NATIVE: RGBColor = RGBColor(90, 140, 200);
const TOLLGATE: RGBColor = RGBColor(230, 130, 40);
const OTHER: RGBColor = RGBColor(150, 150, 150);

/// Envoy's native filters blue, Tollgate orange, floors grey.
fn colour(name: &str) -> RGBColor {
    if name.starts_with("native") {
        NATIVE
    } else if name.starts_with("tollgate") {
        TOLLGATE
    } else {
        OTHER
    }
}

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn load_font() -> Result<(), String> {
    let bytes = std::fs::read(FONT).map_err(|e| format!("{FONT}: {e} (run `cargo xtask setup`)"))?;
    // plotters keeps fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| format!("{FONT}: not a usable font"))
}

pub fn draw(path: &Path, rows: &[Row], title: &str, low_connections: u32) -> Result<(), String> {
    load_font()?;
    let root = BitMapBackend::new(path, (1200, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(640);
    let added: Vec<f64> = rows.iter().map(|r| r.added_us).collect();
    let p99: Vec<f64> = rows.iter().map(|r| r.latency[0][1]).collect();
    bars(&left, rows, &added, "added CPU µs per request (vs baseline)", true)?;
    let caption = format!("p99 latency µs at {low_connections} connections");
    bars(&right, rows, &p99, &caption, false)?;
    root.present().map_err(|e| format!("{}: {e}", path.display()))
}

fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    rows: &[Row],
    values: &[f64],
    caption: &str,
    names: bool,
) -> Result<(), String> {
    let n = rows.len();
    let top = values.iter().copied().filter(|v| v.is_finite()).fold(1.0_f64, f64::max) * 1.18;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(if names { 215 } else { 10 })
        // A segmented range of 0..m holds m + 1 segments.
        .build_cartesian_2d(0.0..top, (0..n.saturating_sub(1)).into_segmented())
        .map_err(|e| e.to_string())?;
    // Row 0 (baseline) at the top: segment n - 1 - i.
    let name = |y: &SegmentValue<usize>| match y {
        SegmentValue::CenterOf(y) if names => n
            .checked_sub(1 + y)
            .and_then(|i| rows.get(i))
            .map_or(String::new(), |r| r.name.to_string()),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_x_mesh()
        .x_labels(6)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_labels(n)
        .y_label_formatter(&name)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    let shown: Vec<(usize, f64, RGBColor)> = values
        .iter()
        .zip(rows)
        .enumerate()
        .filter(|(_, (v, _))| v.is_finite())
        .map(|(i, (v, row))| (n - 1 - i, v.max(0.0), colour(row.name)))
        .collect();
    for group in [NATIVE, TOLLGATE, OTHER] {
        let data = shown.iter().filter(|s| s.2 == group).map(|s| (s.0, s.1));
        chart
            .draw_series(Histogram::horizontal(&chart).style(group.filled()).margin(6).data(data))
            .map_err(|e| e.to_string())?;
    }
    let text = |(y, v, _): (usize, f64, RGBColor)| {
        let shown = if v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        };
        Text::new(shown, (v + top * 0.01, SegmentValue::CenterOf(y)), ("sans-serif", 13))
    };
    chart
        .draw_series(shown.iter().copied().map(text))
        .map_err(|e| e.to_string())?;
    Ok(())
}
