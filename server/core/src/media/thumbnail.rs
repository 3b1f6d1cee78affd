//! Thumbnails: a stored image scaled (or cropped) to a requested size, made once and
//! kept under `data_dir/media/thumbnails/` by content hash, size and method.
//!
//! Decoding is bounded before it starts: a file over `media.max_thumbnail_source_bytes`
//! or whose header declares more than `media.max_thumbnail_source_pixels` is refused
//! (413) without decoding, the decoders' own allocation limit is set from the same
//! bound, and one thumbnail is made at a time, so a decompression bomb cannot take
//! more memory than one bounded image.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use crate::error::{Error, ErrorKind, Result};

/// The largest side a thumbnail is made at; larger requests are clamped to it.
pub const MAX_THUMBNAIL_SIDE: u32 = 2048;

/// How a thumbnail fits its box (the spec's `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThumbnailMethod {
    /// Fit inside the box, keeping the aspect ratio.
    Scale,
    /// Fill the box, keeping the aspect ratio, and cut off what sticks out (centred).
    Crop,
}

impl ThumbnailMethod {
    /// `scale` or `crop`; anything else is 400 `M_INVALID_PARAM`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "scale" => Ok(Self::Scale),
            "crop" => Ok(Self::Crop),
            _ => Err(Error::invalid_param("method must be \"scale\" or \"crop\"")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Scale => "scale",
            Self::Crop => "crop",
        }
    }
}

/// A thumbnail request: the box and how to fit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThumbnailSpec {
    /// Desired width, 1 to `MAX_THUMBNAIL_SIDE`.
    pub width: u32,
    /// Desired height, 1 to `MAX_THUMBNAIL_SIDE`.
    pub height: u32,
    /// Scale or crop.
    pub method: ThumbnailMethod,
}

impl ThumbnailSpec {
    /// A request for `width` × `height`: both must be above 0 (400 `M_INVALID_PARAM`);
    /// sides above `MAX_THUMBNAIL_SIDE` are clamped to it.
    pub fn new(width: u64, height: u64, method: ThumbnailMethod) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::invalid_param("width and height must be above 0"));
        }
        let clamp = |v: u64| v.min(u64::from(MAX_THUMBNAIL_SIDE)) as u32;
        Ok(Self { width: clamp(width), height: clamp(height), method })
    }

    /// The cache file name for a source of `sha256`.
    fn cache_name(&self, sha256: &str, ext: &str) -> String {
        format!("{sha256}-{}x{}-{}.{ext}", self.width, self.height, self.method.name())
    }
}

/// The bounds on what is decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeBounds {
    /// Largest source file.
    pub max_bytes: u64,
    /// Largest width × height a source may declare.
    pub max_pixels: u64,
}

/// A thumbnail on disk.
#[derive(Debug, Clone)]
pub struct Thumbnail {
    /// The file.
    pub path: PathBuf,
    /// Its content type.
    pub content_type: &'static str,
    /// Its size in bytes.
    pub size: u64,
}

/// The error for a file that is no image we can thumbnail (the spec's 400).
fn not_thumbnailable() -> Error {
    Error::new(ErrorKind::BadRequest, "the media cannot be thumbnailed: it is not a PNG, JPEG, GIF or WebP image")
}

/// The size the source `(w, h)` is resized to before any crop, never above the source.
fn resized(src: (u32, u32), spec: &ThumbnailSpec) -> (u32, u32) {
    let (sw, sh) = (f64::from(src.0), f64::from(src.1));
    let (bw, bh) = (f64::from(spec.width), f64::from(spec.height));
    let factor = match spec.method {
        ThumbnailMethod::Scale => (bw / sw).min(bh / sh),
        ThumbnailMethod::Crop => (bw / sw).max(bh / sh),
    }
    .min(1.0);
    let side = |v: f64| (v * factor).round().max(1.0) as u32;
    (side(sw), side(sh))
}

/// Decode `bytes` within `bounds` and make the thumbnail: its encoded bytes and type.
fn render(bytes: &[u8], spec: &ThumbnailSpec, bounds: DecodeBounds) -> Result<(Vec<u8>, &'static str)> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(Error::internal)?;
    let format = reader.format().ok_or_else(not_thumbnailable)?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP) {
        return Err(not_thumbnailable());
    }
    let too_large = || {
        Error::new(
            ErrorKind::TooLarge,
            format!(
                "the image has more than {} pixels, too many to thumbnail (media.max_thumbnail_source_pixels)",
                bounds.max_pixels
            ),
        )
    };
    let mut limits = Limits::default();
    // RGBA with 16 bits a channel is 8 bytes a pixel: the most any decoder here needs.
    limits.max_alloc = Some(bounds.max_pixels.saturating_mul(8));
    let mut reader = reader;
    reader.limits(limits);
    // The decoder reads only the header here and carries the limits set above.
    let decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => too_large(),
        _ => not_thumbnailable(),
    })?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > bounds.max_pixels {
        return Err(too_large());
    }
    let source = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(_) => too_large(),
        _ => Error::new(ErrorKind::BadRequest, format!("the image cannot be decoded: {e}")),
    })?;
    let (rw, rh) = resized((w, h), spec);
    let mut out = if (rw, rh) == (w, h) { source } else { source.resize_exact(rw, rh, FilterType::Triangle) };
    if spec.method == ThumbnailMethod::Crop {
        let (cw, ch) = (spec.width.min(rw), spec.height.min(rh));
        out = out.crop_imm((rw - cw) / 2, (rh - ch) / 2, cw, ch);
    }
    let mut encoded = Cursor::new(Vec::new());
    let content_type = if format == ImageFormat::Jpeg {
        DynamicImage::ImageRgb8(out.to_rgb8())
            .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut encoded, 85))
            .map_err(Error::internal)?;
        "image/jpeg"
    } else {
        out.write_to(&mut encoded, ImageFormat::Png).map_err(Error::internal)?;
        "image/png"
    };
    Ok((encoded.into_inner(), content_type))
}

/// The thumbnail of the file `source` (content hash `sha256`, `size` bytes), from the
/// cache in `dir` or made now and stored there (temporary file, then rename).
/// Blocking: run it off the async threads, one at a time.
pub(crate) fn thumbnail_blocking(
    dir: &Path,
    source: &Path,
    sha256: &str,
    size: u64,
    spec: &ThumbnailSpec,
    bounds: DecodeBounds,
) -> Result<Thumbnail> {
    for (ext, content_type) in [("png", "image/png"), ("jpg", "image/jpeg")] {
        let path = dir.join(spec.cache_name(sha256, ext));
        if let Ok(meta) = std::fs::metadata(&path) {
            return Ok(Thumbnail { path, content_type, size: meta.len() });
        }
    }
    if size > bounds.max_bytes {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "the file is larger than {} bytes, too large to thumbnail (media.max_thumbnail_source_bytes)",
                bounds.max_bytes
            ),
        ));
    }
    let bytes = std::fs::read(source)
        .map_err(|e| Error::internal(format!("media file {} is unreadable: {e}", source.display())))?;
    let (encoded, content_type) = render(&bytes, spec, bounds)?;
    drop(bytes);
    let ext = if content_type == "image/jpeg" { "jpg" } else { "png" };
    let path = dir.join(spec.cache_name(sha256, ext));
    let temp = dir.join(format!("thumb-{:016x}.tmp", rand::random::<u64>()));
    let io = |e: std::io::Error| Error::internal(format!("storing a thumbnail: {e}"));
    std::fs::write(&temp, &encoded).map_err(io)?;
    std::fs::rename(&temp, &path).map_err(io)?;
    Ok(Thumbnail { path, content_type, size: encoded.len() as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(width: u32, height: u32, method: ThumbnailMethod) -> ThumbnailSpec {
        ThumbnailSpec { width, height, method }
    }

    #[test]
    fn scale_fits_inside_crop_covers_and_neither_upscales() {
        assert_eq!(resized((200, 100), &spec(64, 64, ThumbnailMethod::Scale)), (64, 32));
        assert_eq!(resized((200, 100), &spec(64, 64, ThumbnailMethod::Crop)), (128, 64));
        assert_eq!(resized((20, 10), &spec(64, 64, ThumbnailMethod::Scale)), (20, 10));
        assert_eq!(resized((20, 10), &spec(64, 64, ThumbnailMethod::Crop)), (20, 10));
        assert_eq!(resized((1, 10_000), &spec(32, 32, ThumbnailMethod::Scale)), (1, 32));
    }

    #[test]
    fn a_declared_huge_image_is_refused_before_decoding() {
        let mut img = image::RgbImage::new(4, 4);
        img.put_pixel(0, 0, image::Rgb([255, 0, 0]));
        let mut png = Cursor::new(Vec::new());
        img.write_to(&mut png, ImageFormat::Png).expect("encode");
        let bounds = DecodeBounds { max_bytes: 1 << 20, max_pixels: 15 };
        let err = render(png.get_ref(), &spec(2, 2, ThumbnailMethod::Scale), bounds).expect_err("too many pixels");
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        let bounds = DecodeBounds { max_bytes: 1 << 20, max_pixels: 16 };
        let (out, ty) = render(png.get_ref(), &spec(2, 2, ThumbnailMethod::Scale), bounds).expect("thumbnail");
        assert_eq!(ty, "image/png");
        let decoded = image::load_from_memory(&out).expect("decode");
        assert_eq!((decoded.width(), decoded.height()), (2, 2));
    }
}
