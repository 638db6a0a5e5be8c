//! Images out: a batch `[n, c, h, w]` in [−1, 1] as a PNG grid, single PNGs, or the frames of an
//! animated GIF.

use std::path::Path;

use anyhow::{Context, Result};
use image::buffer::ConvertBuffer;
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, Rgb, RgbImage, RgbaImage};

use ddpm::grid::{self, PAD};

use crate::output;

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
    fn shape(&self, n: usize) -> [usize; 4] {
        [n, self.channels, self.height, self.width]
    }

    /// Image `i` as RGB bytes.
    pub fn image(&self, i: usize) -> RgbImage {
        let len = self.channels * self.height * self.width;
        let framed = rgb(grid::grid(
            &self.values[i * len..(i + 1) * len],
            self.shape(1),
            1,
        ));
        let (pad, w, h) = (PAD as u32, self.width as u32, self.height as u32);
        image::imageops::crop_imm(&framed, pad, pad, w, h).to_image()
    }

    /// All images in a grid of `columns` columns (the browser draws the same bytes).
    pub fn grid(&self, columns: usize) -> RgbImage {
        rgb(grid::grid(&self.values, self.shape(self.n), columns))
    }
}

/// An RGBA grid as an RGB image.
fn rgb(image: grid::Rgba) -> RgbImage {
    let pixels = image
        .pixels
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]]);
    RgbImage::from_raw(image.width as u32, image.height as u32, pixels.collect())
        .expect("width × height × 3 bytes")
}

/// Writes a PNG, replacing `path` whole (commands check for existing outputs before any work,
/// `output::refuse_existing`): a write that fails leaves the old file.
pub fn save_png(image: &RgbImage, path: &Path) -> Result<()> {
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .with_context(|| format!("{}: cannot encode", path.display()))?;
    output::write_new(path, &png, true)
}

/// Writes an animated GIF that loops, each frame shown `delay_ms`, the last one twice as long;
/// replaced whole, as [`save_png`] does.
pub fn save_gif(frames: &[RgbImage], delay_ms: u32, path: &Path) -> Result<()> {
    let gif = encode_gif(frames, delay_ms, gif_speed(frames))
        .with_context(|| format!("{}: cannot encode a frame", path.display()))?;
    output::write_new(path, &gif, true)
}

/// All frames' pixels that [`gif_speed`] quantises at the best speed (about 4 s on one core).
const GIF_FULL_PIXELS: u64 = 4_000_000;

/// The GIF encoder's speed for these frames. A frame of more than 256 colours gets a palette
/// learnt from every `speed`-th pixel: 1, every pixel, unless the frames together hold more than
/// [`GIF_FULL_PIXELS`] (the default 16 images of 50 DDIM steps hold 0.4 M; 64 RGB images of
/// 1000 DDPM steps 30 M), then proportionally faster, at most the image crate's usual 10.
fn gif_speed(frames: &[RgbImage]) -> i32 {
    let pixels: u64 = frames
        .iter()
        .map(|f| u64::from(f.width()) * u64::from(f.height()))
        .sum();
    pixels.div_ceil(GIF_FULL_PIXELS).clamp(1, 10) as i32
}

/// The GIF's bytes, in memory.
fn encode_gif(frames: &[RgbImage], delay_ms: u32, speed: i32) -> image::ImageResult<Vec<u8>> {
    let mut gif = Vec::new();
    {
        // Dropping the encoder writes the trailer; into memory that cannot fail.
        let mut encoder = GifEncoder::new_with_speed(&mut gif, speed);
        encoder.set_repeat(Repeat::Infinite)?;
        let last = frames.len().saturating_sub(1);
        for (i, frame) in frames.iter().enumerate() {
            let rgba: RgbaImage = frame.convert();
            let ms = if i == last { 2 * delay_ms } else { delay_ms };
            let delay = Delay::from_numer_denom_ms(ms, 1);
            encoder.encode_frame(Frame::from_parts(rgba, 0, 0, delay))?;
        }
    }
    Ok(gif)
}

/// Two images side by side with a gap, e.g. x_t and the predicted x̂₀.
pub fn side_by_side(left: &RgbImage, right: &RgbImage) -> RgbImage {
    let gap = 4 * PAD as u32;
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

    /// The mean error per channel of a one-frame GIF against `frame`.
    fn gif_error(frame: &RgbImage, speed: i32) -> f64 {
        use image::AnimationDecoder;
        let gif = encode_gif(std::slice::from_ref(frame), 80, speed).expect("gif");
        let decoder = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(gif)).expect("gif");
        let first = decoder
            .into_frames()
            .next()
            .expect("a frame")
            .expect("decodes");
        let total: u64 = first
            .buffer()
            .pixels()
            .zip(frame.pixels())
            .flat_map(|(a, b)| (0..3).map(move |c| u64::from(a[c].abs_diff(b[c]))))
            .sum();
        total as f64 / f64::from(3 * frame.width() * frame.height())
    }

    fn colourful(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
            Rgb([
                (255.0 * u) as u8,
                (255.0 * v) as u8,
                (127.0 + 120.0 * (20.0 * u * v).sin()) as u8,
            ])
        })
    }

    #[test]
    fn gif_palettes_come_from_every_pixel_unless_the_frames_are_many() {
        let frame = colourful(140, 70); // 9,800 colours
        let speed = gif_speed(std::slice::from_ref(&frame));
        assert_eq!(speed, 1);
        // Speed 10 (before) was off by 11.5 on average; every pixel's palette by 7.7.
        let error = gif_error(&frame, speed);
        assert!(error < 9.0, "{error}");
        // Default sampling (16 images, 50 DDIM steps, every 5th: 11 frames) stays at 1; 200
        // frames of 64 RGB images beside x̂₀ (30 M pixels) go faster.
        let small = RgbImage::new(280, 140);
        assert_eq!(gif_speed(&vec![small; 11]), 1);
        let large = RgbImage::new(550, 274);
        assert_eq!(gif_speed(&vec![large; 200]), 8);
    }

    #[test]
    fn single_images_drop_the_grid_padding() {
        let batch = Batch {
            values: vec![1.0, -1.0, -1.0, -1.0, -1.0, 1.0],
            n: 2,
            channels: 3,
            height: 1,
            width: 1,
        };
        let image = batch.image(1);
        assert_eq!((image.width(), image.height()), (1, 1));
        assert_eq!(image.get_pixel(0, 0).0, [0, 0, 255]);
        assert_eq!(
            batch
                .grid(2)
                .get_pixel(grid::PAD as u32, grid::PAD as u32)
                .0,
            [255, 0, 0]
        );
    }
}
