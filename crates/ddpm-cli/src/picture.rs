//! Images out: a batch `[n, c, h, w]` in [−1, 1] as a PNG grid, single PNGs, or the frames of an
//! animated GIF.

use std::path::Path;

use anyhow::{Context, Result};
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, Rgb, RgbImage, RgbaImage};

/// Pixels between the images of a grid.
const PAD: u32 = 2;

/// A batch read back from the device: `n` images of `channels × size × size` values in [−1, 1].
pub struct Batch {
    /// The values, image after image, channel-major.
    pub values: Vec<f32>,
    /// Images.
    pub n: usize,
    /// 1 or 3.
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
}

impl Batch {
    /// Image `i` as RGB bytes.
    pub fn image(&self, i: usize) -> RgbImage {
        let (c, h, w) = (self.channels, self.height, self.width);
        let plane = h * w;
        let image = &self.values[i * c * plane..(i + 1) * c * plane];
        let byte = |v: f32| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
        RgbImage::from_fn(w as u32, h as u32, |x, y| {
            let p = y as usize * w + x as usize;
            if c == 1 {
                let v = byte(image[p]);
                Rgb([v, v, v])
            } else {
                Rgb([
                    byte(image[p]),
                    byte(image[plane + p]),
                    byte(image[2 * plane + p]),
                ])
            }
        })
    }

    /// All images in a grid of `columns` columns.
    pub fn grid(&self, columns: usize) -> RgbImage {
        let columns = columns.clamp(1, self.n.max(1));
        let rows = self.n.div_ceil(columns);
        let (w, h) = (self.width as u32, self.height as u32);
        let mut grid = RgbImage::from_pixel(
            columns as u32 * (w + PAD) + PAD,
            rows as u32 * (h + PAD) + PAD,
            Rgb([32, 32, 32]),
        );
        for i in 0..self.n {
            let (r, c) = ((i / columns) as u32, (i % columns) as u32);
            image::imageops::replace(
                &mut grid,
                &self.image(i),
                i64::from(PAD + c * (w + PAD)),
                i64::from(PAD + r * (h + PAD)),
            );
        }
        grid
    }
}

/// Columns of a roughly square grid of `n` images.
pub fn square_columns(n: usize) -> usize {
    (n as f64).sqrt().ceil().max(1.0) as usize
}

/// Writes a PNG, naming the file in any error.
pub fn save_png(image: &RgbImage, path: &Path) -> Result<()> {
    image
        .save_with_format(path, image::ImageFormat::Png)
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// Writes an animated GIF that loops, each frame shown `delay_ms`, the last one twice as long.
pub fn save_gif(frames: &[RgbImage], delay_ms: u32, path: &Path) -> Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    let mut encoder = GifEncoder::new_with_speed(std::io::BufWriter::new(file), 10);
    encoder.set_repeat(Repeat::Infinite)?;
    let last = frames.len().saturating_sub(1);
    for (i, frame) in frames.iter().enumerate() {
        let rgba: RgbaImage = image::DynamicImage::ImageRgb8(frame.clone()).to_rgba8();
        let ms = if i == last { 2 * delay_ms } else { delay_ms };
        let delay = Delay::from_numer_denom_ms(ms, 1);
        encoder
            .encode_frame(Frame::from_parts(rgba, 0, 0, delay))
            .with_context(|| format!("{}: cannot write a frame", path.display()))?;
    }
    Ok(())
}

/// Two images side by side with a gap, e.g. x_t and the predicted x̂₀.
pub fn side_by_side(left: &RgbImage, right: &RgbImage) -> RgbImage {
    let gap = 4 * PAD;
    let mut out = RgbImage::from_pixel(
        left.width() + gap + right.width(),
        left.height().max(right.height()),
        Rgb([32, 32, 32]),
    );
    image::imageops::replace(&mut out, left, 0, 0);
    image::imageops::replace(&mut out, right, i64::from(left.width() + gap), 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_images_and_maps_values_to_bytes() {
        // Two 1×2 gray images: (−1, 1) and (0, 0.5).
        let batch = Batch {
            values: vec![-1.0, 1.0, 0.0, 0.5],
            n: 2,
            channels: 1,
            height: 1,
            width: 2,
        };
        let grid = batch.grid(2);
        assert_eq!(
            (grid.width(), grid.height()),
            (2 * (2 + PAD) + PAD, 1 + 2 * PAD)
        );
        assert_eq!(grid.get_pixel(PAD, PAD).0, [0, 0, 0]);
        assert_eq!(grid.get_pixel(PAD + 1, PAD).0, [255, 255, 255]);
        assert_eq!(grid.get_pixel(2 * PAD + 2, PAD).0, [128, 128, 128]);
        assert_eq!(grid.get_pixel(2 * PAD + 3, PAD).0, [191, 191, 191]);
        assert_eq!(grid.get_pixel(0, 0).0, [32, 32, 32]);
    }

    #[test]
    fn rgb_planes_become_pixels() {
        let batch = Batch {
            values: vec![1.0, -1.0, -1.0],
            n: 1,
            channels: 3,
            height: 1,
            width: 1,
        };
        assert_eq!(batch.image(0).get_pixel(0, 0).0, [255, 0, 0]);
    }
}
