//! `image-meta`: format, dimensions, colour type and a 64-bit perceptual
//! difference hash (dHash) of an image.
//!
//! dHash: the image is reduced to 9×8 grey pixels; each bit says whether a
//! pixel is brighter than its right neighbour. Near-identical images
//! (re-encoded, resized) have hashes a few bits apart.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, ImageReader, Limits};
use strata_sdk::prelude::*;

/// The extractor.
pub struct ImageMeta;

/// A configured session.
pub struct ImageSession {
    max_pixels: u64,
}

const MAX_PIXELS: Param = Param::uint(
    "max_pixels",
    40_000_000,
    1,
    100_000_000,
    "larger images are refused unread (decompression bombs)",
);
const PARAMS: &[Param] = &[MAX_PIXELS];

impl Extractor for ImageMeta {
    type Session = ImageSession;

    fn manifest() -> Manifest {
        Manifest::new(
            "image-meta",
            "1.0.0",
            "Image format, dimensions, colour type and 64-bit dHash",
        )
        .input("content")
        .output(Column::new(
            "format",
            DataType::Utf8,
            "png, jpeg, gif, webp, bmp or tiff",
        ))
        .output(Column::new("width", DataType::UInt32, "pixels"))
        .output(Column::new("height", DataType::UInt32, "pixels"))
        .output(Column::new(
            "color_type",
            DataType::Utf8,
            "e.g. rgb8, rgba8, l8",
        ))
        .output(Column::new(
            "dhash",
            DataType::Utf8,
            "64-bit difference hash as 16 hex digits",
        ))
        .params(PARAMS)
        .mime_types(["image/*"])
        .batch_size(16)
        .memory_limit_mb(512)
    }

    fn open(params: &Params) -> Result<ImageSession, OpenError> {
        params.check(PARAMS)?;
        Ok(ImageSession {
            max_pixels: u64::from(params.uint(&MAX_PIXELS)?),
        })
    }
}

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Lower-case format name.
    pub format: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Lower-case colour type.
    pub color_type: String,
    /// dHash.
    pub dhash: u64,
}

/// Decodes `bytes` and describes the image.
pub fn inspect(bytes: &[u8], max_pixels: u64) -> Result<ImageInfo, String> {
    let open = || {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| format!("cannot read image: {e}"))
    };
    let mut reader = open()?;
    let format = reader
        .format()
        .ok_or_else(|| "not an image in a known format".to_owned())?;
    // The header alone first: a decompression bomb is refused unread.
    let (width, height) = open()?
        .into_dimensions()
        .map_err(|e| format!("cannot read {format:?} header: {e}"))?;
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(format!(
            "image of {width}x{height} pixels exceeds max_pixels {max_pixels}"
        ));
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(8).max(1 << 20));
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|e| format!("cannot decode {format:?} image: {e}"))?;
    Ok(ImageInfo {
        format: format!("{format:?}").to_lowercase(),
        width,
        height,
        color_type: format!("{:?}", image.color()).to_lowercase(),
        dhash: dhash(&image),
    })
}

/// The 64-bit difference hash of an image.
pub fn dhash(image: &DynamicImage) -> u64 {
    let small = image.resize_exact(9, 8, FilterType::Triangle).to_luma8();
    let mut hash = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            let brighter = small.get_pixel(x, y)[0] > small.get_pixel(x + 1, y)[0];
            hash = (hash << 1) | u64::from(brighter);
        }
    }
    hash
}

impl Session for ImageSession {
    fn process(&mut self, input: &Input) -> Result<Output, Error> {
        let content = input.binary("content")?;
        let mut format = StringBuilder::new();
        let mut width = UInt32Builder::new();
        let mut height = UInt32Builder::new();
        let mut color = StringBuilder::new();
        let mut hash = StringBuilder::new();
        let mut errors = Vec::with_capacity(content.len());
        for bytes in content.iter() {
            let info = bytes
                .ok_or_else(|| "object has no content".to_owned())
                .and_then(|b| inspect(b, self.max_pixels));
            match info {
                Ok(info) => {
                    format.append_value(&info.format);
                    width.append_value(info.width);
                    height.append_value(info.height);
                    color.append_value(&info.color_type);
                    hash.append_value(format!("{:016x}", info.dhash));
                    errors.push(None);
                }
                Err(reason) => {
                    format.append_null();
                    width.append_null();
                    height.append_null();
                    color.append_null();
                    hash.append_null();
                    errors.push(Some(reason));
                }
            }
        }
        Ok(Output::new(vec![
            Arc::new(format.finish()),
            Arc::new(width.finish()),
            Arc::new(height.finish()),
            Arc::new(color.finish()),
            Arc::new(hash.finish()),
        ])
        .with_errors(errors))
    }
}

strata_sdk::export_extractor!(ImageMeta);

#[cfg(test)]
mod tests {
    use image::{ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

    use super::*;

    fn gradient(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 128])
        })
    }

    fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).expect("encode");
        out.into_inner()
    }

    #[test]
    fn describes_png_and_jpeg() {
        let png = encode(
            DynamicImage::ImageRgba8(RgbaImage::from_pixel(40, 30, Rgba([1, 2, 3, 255]))),
            ImageFormat::Png,
        );
        let info = inspect(&png, u64::MAX).expect("png");
        assert_eq!(
            (info.format.as_str(), info.width, info.height),
            ("png", 40, 30)
        );
        assert_eq!(info.color_type, "rgba8");

        let jpeg = encode(DynamicImage::ImageRgb8(gradient(64, 48)), ImageFormat::Jpeg);
        let info = inspect(&jpeg, u64::MAX).expect("jpeg");
        assert_eq!(
            (info.format.as_str(), info.width, info.height),
            ("jpeg", 64, 48)
        );
        assert_eq!(info.color_type, "rgb8");
    }

    #[test]
    fn dhash_survives_resizing_and_separates_images() {
        let original = DynamicImage::ImageRgb8(gradient(128, 96));
        let smaller = original.resize_exact(64, 48, FilterType::Lanczos3);
        let flipped = original.fliph();
        let distance = |a: u64, b: u64| (a ^ b).count_ones();
        assert!(distance(dhash(&original), dhash(&smaller)) <= 4);
        assert!(distance(dhash(&original), dhash(&flipped)) >= 32);
    }

    #[test]
    fn bad_and_oversized_images_fail_their_row_only() {
        let png = encode(
            DynamicImage::ImageRgb8(gradient(100, 100)),
            ImageFormat::Png,
        );
        let batch = RecordBatch::try_from_iter([(
            "content",
            Arc::new(BinaryArray::from(vec![&b"not an image"[..], &png[..]])) as ArrayRef,
        )])
        .expect("batch");
        let out = strata_sdk::run::<ImageMeta>("{}", batch.clone()).expect("processed");
        let errors = out.column_by_name("_error").expect("_error");
        assert!(errors.is_valid(0) && errors.is_null(1));
        assert!(
            inspect(&png, 5_000)
                .expect_err("too big")
                .contains("exceeds max_pixels")
        );
    }
}
