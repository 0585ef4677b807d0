//! The built-in text embedder: deterministic feature hashing of words and character trigrams
//! into a fixed number of dimensions, L2-normalized, so that texts sharing words and word
//! fragments have a high cosine similarity. No network, the same vector on every machine.

use async_trait::async_trait;

use super::{Embedder, GenerationError};
use crate::product::text_hash;

/// The built-in embedder's dimensions.
pub const DIMENSIONS: usize = 128;

/// The deterministic hashing embedder.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashEmbedder;

impl HashEmbedder {
    /// The vector of `text`.
    pub fn vector(text: &str) -> Vec<f32> {
        let mut v = vec![0f32; DIMENSIONS];
        let lower = text.to_lowercase();
        for word in lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            add(&mut v, word, 1.0);
            let padded: Vec<char> = format!(" {word} ").chars().collect();
            for tri in padded.windows(3) {
                add(&mut v, &tri.iter().collect::<String>(), 0.5);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

fn add(v: &mut [f32], feature: &str, weight: f32) {
    let h = text_hash(feature);
    let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
    v[(h % DIMENSIONS as u64) as usize] += sign * weight;
}

/// Cosine similarity of two vectors of the same length.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) }
}

#[async_trait]
impl Embedder for HashEmbedder {
    fn id(&self) -> String {
        format!("hash-embed/1 ({DIMENSIONS}d)")
    }

    fn is_builtin(&self) -> bool {
        true
    }

    async fn embed(&self, text: &str) -> Result<Vec<f32>, GenerationError> {
        Ok(Self::vector(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn related_texts_are_closer_than_unrelated_ones() {
        let train = HashEmbedder::vector("wooden toy train with wagons");
        let trains = HashEmbedder::vector("toy trains made of wood");
        let soap = HashEmbedder::vector("lavender soap for dry skin");
        assert!(
            cosine(&train, &trains) > cosine(&train, &soap) + 0.2,
            "{} {}",
            cosine(&train, &trains),
            cosine(&train, &soap)
        );
        assert_eq!(train, HashEmbedder::vector("wooden toy train with wagons"));
        assert!((cosine(&train, &train) - 1.0).abs() < 1e-5);
    }
}
