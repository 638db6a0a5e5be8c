//! Samples as pixels: a batch `[n, c, h, w]` of values in [−1, 1] laid out as one RGBA grid, the
//! same bytes in the CLI's PNGs and on the browser's canvas.

/// Pixels between the images of a grid and around it.
pub const PAD: usize = 2;

/// The grey between the images.
const BACKGROUND: [u8; 4] = [32, 32, 32, 255];

/// A value in [−1, 1] as a byte (the data transform of §3.3 undone, clipped and rounded).
pub fn to_byte(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Columns of a roughly square grid of `n` images.
pub fn square_columns(n: usize) -> usize {
    (n as f64).sqrt().ceil().max(1.0) as usize
}

/// An RGBA image, row after row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgba {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width × height × 4` bytes.
    pub pixels: Vec<u8>,
}

/// Lays out `values` (`shape = [n, c, h, w]`, c = 1 or 3, channel-major per image) in a grid of
/// `columns` columns with [`PAD`] pixels between images. Gray images become gray pixels.
///
/// # Panics
/// When `values.len()` is not the product of `shape` or `c` is neither 1 nor 3 (the callers
/// read the values from a sampler of that shape).
pub fn grid(values: &[f32], shape: [usize; 4], columns: usize) -> Rgba {
    let [n, c, h, w] = shape;
    assert_eq!(values.len(), n * c * h * w, "values do not match {shape:?}");
    assert!(c == 1 || c == 3, "1 or 3 channels, got {c}");
    let columns = columns.clamp(1, n.max(1));
    let rows = n.div_ceil(columns);
    let width = columns * (w + PAD) + PAD;
    let height = rows * (h + PAD) + PAD;
    let mut pixels = BACKGROUND.repeat(width * height);
    let plane = h * w;
    for (i, image) in values.chunks_exact(c * plane).enumerate() {
        let (left, top) = (
            PAD + (i % columns) * (w + PAD),
            PAD + (i / columns) * (h + PAD),
        );
        for y in 0..h {
            for x in 0..w {
                let p = y * w + x;
                let rgb = if c == 1 {
                    [to_byte(image[p]); 3]
                } else {
                    [
                        to_byte(image[p]),
                        to_byte(image[plane + p]),
                        to_byte(image[2 * plane + p]),
                    ]
                };
                let at = ((top + y) * width + left + x) * 4;
                pixels[at..at + 3].copy_from_slice(&rgb);
            }
        }
    }
    Rgba {
        width,
        height,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(image: &Rgba, x: usize, y: usize) -> [u8; 4] {
        let at = (y * image.width + x) * 4;
        image.pixels[at..at + 4].try_into().expect("4 bytes")
    }

    #[test]
    fn grid_places_images_and_maps_values_to_bytes() {
        // Two 1×2 gray images: (−1, 1) and (0, 0.5), side by side.
        let image = grid(&[-1.0, 1.0, 0.0, 0.5], [2, 1, 1, 2], 2);
        assert_eq!(
            (image.width, image.height),
            (2 * (2 + PAD) + PAD, 1 + 2 * PAD)
        );
        assert_eq!(pixel(&image, PAD, PAD), [0, 0, 0, 255]);
        assert_eq!(pixel(&image, PAD + 1, PAD), [255, 255, 255, 255]);
        assert_eq!(pixel(&image, 2 * PAD + 2, PAD), [128, 128, 128, 255]);
        assert_eq!(pixel(&image, 2 * PAD + 3, PAD), [191, 191, 191, 255]);
        assert_eq!(pixel(&image, 0, 0), BACKGROUND);
        // One column: the second image goes below the first.
        let image = grid(&[-1.0, 1.0, 0.0, 0.5], [2, 1, 1, 2], 1);
        assert_eq!(
            (image.width, image.height),
            (2 + 2 * PAD, 2 * (1 + PAD) + PAD)
        );
        assert_eq!(pixel(&image, PAD, 2 * PAD + 1), [128, 128, 128, 255]);
    }

    #[test]
    fn rgb_planes_become_pixels_and_values_are_clipped() {
        let image = grid(&[1.5, -1.0, -3.0], [1, 3, 1, 1], 1);
        assert_eq!(pixel(&image, PAD, PAD), [255, 0, 0, 255]);
        assert_eq!(square_columns(16), 4);
        assert_eq!(square_columns(10), 4);
        assert_eq!(square_columns(0), 1);
    }
}
