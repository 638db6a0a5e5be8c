//! The loss curve of a run as a PNG: every step's loss, faint, under its moving average, on a
//! logarithmic axis.

use std::path::Path;
use std::sync::Once;

use anyhow::{Context, Result, bail};
use plotters::prelude::*;

const FONT: &[u8] = include_bytes!("../../../data/fonts/DejaVuSans.ttf");
const SIZE: (u32, u32) = (800, 400);

/// Reads `(step, loss)` rows from a run's metrics.csv (header first, step and loss first).
pub fn read_losses(metrics: &Path) -> Result<Vec<(usize, f64)>> {
    let text = std::fs::read_to_string(metrics)
        .with_context(|| format!("{}: cannot read", metrics.display()))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split(',');
            let step = fields.next()?.parse().ok()?;
            let loss: f64 = fields.next()?.parse().ok()?;
            loss.is_finite().then_some((step, loss))
        })
        .collect())
}

/// Draws the curve into `path`.
pub fn loss_curve(rows: &[(usize, f64)], path: &Path) -> Result<()> {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The font is compiled in; registering it cannot fail unless the file is corrupt,
        // in which case the labels are missing and drawing reports the error below.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
    let Some(&(last_step, _)) = rows.last() else {
        bail!("no losses to plot");
    };
    let positive: Vec<f64> = rows.iter().map(|r| r.1).filter(|&l| l > 0.0).collect();
    let low = positive.iter().copied().fold(f64::INFINITY, f64::min);
    // No positive loss at all (a loss weight that rounds to 0): a fixed floor, as plotters
    // loops forever on a logarithmic range from infinity to infinity.
    let low = if low.is_finite() { low.max(1e-6) } else { 1e-6 };
    let high = positive.iter().copied().fold(0.0, f64::max).max(low * 1.01);
    let mut smoothed = Vec::with_capacity(rows.len());
    let mut average = rows[0].1;
    for &(step, loss) in rows {
        average = 0.95 * average + 0.05 * loss;
        smoothed.push((step, average.max(low)));
    }
    let (w, h) = SIZE;
    let mut buffer = vec![0u8; (w * h * 3) as usize];
    {
        let draw = |e: &dyn std::fmt::Debug| anyhow::anyhow!("cannot draw the loss curve: {e:?}");
        let root = BitMapBackend::with_buffer(&mut buffer, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("training loss", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(0..last_step.max(1), (low..high).log_scale())
            .map_err(|e| draw(&e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .draw()
            .map_err(|e| draw(&e))?;
        let raw = rows.iter().map(|&(s, l)| (s, l.max(low)));
        chart
            .draw_series(LineSeries::new(raw, RGBColor(190, 200, 235)))
            .map_err(|e| draw(&e))?;
        chart
            .draw_series(LineSeries::new(
                smoothed,
                RGBColor(30, 60, 170).stroke_width(2),
            ))
            .map_err(|e| draw(&e))?;
        root.present().map_err(|e| draw(&e))?;
    }
    let image = image::RgbImage::from_raw(w, h, buffer).context("plot buffer size")?;
    crate::picture::save_png(&image, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_is_drawn_from_the_metrics_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let metrics = dir.path().join("metrics.csv");
        let mut text = String::from("step,loss,lr,images_per_second,seconds\n");
        for s in 1..=200 {
            text += &format!("{s},{},1e-4,10,{s}\n", 1.0 / f64::from(s));
        }
        text += "201,NaN,1e-4,10,201\n";
        std::fs::write(&metrics, text).expect("write");
        let rows = read_losses(&metrics).expect("read");
        assert_eq!(rows.len(), 200);
        let png = dir.path().join("loss.png");
        loss_curve(&rows, &png).expect("draw");
        let image = image::open(&png).expect("png").to_rgb8();
        assert_eq!(image.dimensions(), SIZE);
        // Dark pixels: the axes, labels and the smoothed curve were drawn.
        let dark = image
            .pixels()
            .filter(|p| p.0.iter().all(|&c| c < 100))
            .count();
        assert!(dark > 500, "only {dark} dark pixels");
        // The moving average's dark blue: drawn across the chart, falling as the loss does
        // (the image's y grows downwards).
        let curve: Vec<(u32, u32)> = image
            .enumerate_pixels()
            .filter(|(_, _, p)| {
                let [r, g, b] = p.0;
                b > 120 && i32::from(b) - i32::from(r) > 80 && g < 120
            })
            .map(|(x, y, _)| (x, y))
            .collect();
        assert!(curve.len() > 500, "{} pixels of the curve", curve.len());
        let (left, right) = (
            curve.iter().map(|p| p.0).min().expect("curve"),
            curve.iter().map(|p| p.0).max().expect("curve"),
        );
        assert!(right - left > SIZE.0 / 2, "the curve spans {left}..{right}");
        let mean_y = |near: u32| {
            let ys: Vec<f64> = curve
                .iter()
                .filter(|p| p.0.abs_diff(near) < 20)
                .map(|p| f64::from(p.1))
                .collect();
            ys.iter().sum::<f64>() / ys.len() as f64
        };
        assert!(
            mean_y(left) + 100.0 < mean_y(right),
            "the curve does not fall"
        );
        assert!(loss_curve(&[], &png).is_err());
    }

    #[test]
    fn losses_that_are_all_zero_are_drawn_on_a_floor() {
        let dir = tempfile::tempdir().expect("tmp");
        let png = dir.path().join("loss.png");
        let rows: Vec<(usize, f64)> = (1..=10).map(|s| (s, 0.0)).collect();
        // In a thread: with an empty range plotters never returned, and a test should fail.
        let (done, finished) = std::sync::mpsc::channel();
        let drawn = png.clone();
        std::thread::spawn(move || done.send(loss_curve(&rows, &drawn).is_ok()));
        let ok = finished.recv_timeout(std::time::Duration::from_secs(60));
        assert_eq!(ok, Ok(true), "drawing did not finish, or failed");
        assert_eq!(image::open(&png).expect("png").width(), SIZE.0);
    }
}
