//! The Fréchet distance between two Gaussians fitted to feature vectors (Heusel et al. 2017,
//! the "FID" formula): ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½).

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// The mean and covariance of a set of feature vectors.
#[derive(Debug, Clone)]
pub struct Gaussian {
    mean: DVector<f64>,
    covariance: DMatrix<f64>,
}

impl Gaussian {
    /// Fits `features` (`dim` values per sample, sample after sample; at least two samples):
    /// the sample mean and the unbiased sample covariance.
    pub fn fit(features: &[f32], dim: usize) -> Self {
        let n = features.len() / dim;
        let x = DMatrix::from_row_iterator(n, dim, features.iter().map(|&v| f64::from(v)));
        let mean = x.row_mean().transpose();
        let centred = DMatrix::from_fn(n, dim, |i, j| x[(i, j)] - mean[j]);
        let covariance = centred.transpose() * &centred / (n.max(2) - 1) as f64;
        Self { mean, covariance }
    }

    /// The Fréchet distance to `other`.
    pub fn distance(&self, other: &Self) -> f64 {
        let diff = &self.mean - &other.mean;
        let root = psd_sqrt(&self.covariance);
        let product = &root * &other.covariance * &root;
        // Σ₁^½ Σ₂ Σ₁^½ is symmetric positive semi-definite: its square root's trace is the sum
        // of the square roots of its eigenvalues (rounding can make tiny ones negative).
        let cross: f64 = SymmetricEigen::new(symmetrised(product))
            .eigenvalues
            .iter()
            .map(|&e| e.max(0.0).sqrt())
            .sum();
        let d =
            diff.norm_squared() + self.covariance.trace() + other.covariance.trace() - 2.0 * cross;
        d.max(0.0)
    }
}

fn symmetrised(m: DMatrix<f64>) -> DMatrix<f64> {
    (&m + m.transpose()) * 0.5
}

/// The symmetric square root of a positive semi-definite matrix.
fn psd_sqrt(m: &DMatrix<f64>) -> DMatrix<f64> {
    let eigen = SymmetricEigen::new(symmetrised(m.clone()));
    let roots = eigen.eigenvalues.map(|e| e.max(0.0).sqrt());
    &eigen.eigenvectors * DMatrix::from_diagonal(&roots) * eigen.eigenvectors.transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddpm::NoiseSource;

    fn normal_samples(n: usize, means: &[f64], stds: &[f64], seed: u64) -> Vec<f32> {
        let mut rng = NoiseSource::new(seed);
        (0..n)
            .flat_map(|_| {
                means
                    .iter()
                    .zip(stds)
                    .map(|(m, s)| (m + s * rng.normal()) as f32)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn distance_of_diagonal_gaussians_has_its_closed_form() {
        // For diagonal covariances: Σ (μ₁ − μ₂)² + (σ₁ − σ₂)² over the dimensions.
        let a = Gaussian {
            mean: DVector::from_vec(vec![0.0, 1.0, -2.0]),
            covariance: DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 4.0, 0.25])),
        };
        let b = Gaussian {
            mean: DVector::from_vec(vec![1.0, 1.0, 0.0]),
            covariance: DMatrix::from_diagonal(&DVector::from_vec(vec![9.0, 4.0, 1.0])),
        };
        let want = (1.0 + 0.0 + 4.0) + (4.0 + 0.0 + 0.25);
        assert!((a.distance(&b) - want).abs() < 1e-9, "{}", a.distance(&b));
        assert!((b.distance(&a) - want).abs() < 1e-9);
        assert!(a.distance(&a).abs() < 1e-9);
    }

    #[test]
    fn covariances_that_do_not_commute_have_the_closed_form_of_two_dimensions() {
        // In 2-D, tr √M = √(tr M + 2 √det M) for M = Σ₁^½ Σ₂ Σ₁^½, whose trace is tr(Σ₁Σ₂) and
        // determinant det Σ₁ det Σ₂: the cross term without a matrix square root. Σ₁ is diag(4, 1)
        // rotated, so it does not commute with Σ₂ = diag(1, 9); a shortcut such as
        // tr(Σ₁^½ Σ₂^½) gives 7.44 instead of 7.294.
        let a = Gaussian {
            mean: DVector::from_vec(vec![1.0, 0.0]),
            covariance: DMatrix::from_row_slice(2, 2, &[2.08, 1.44, 1.44, 2.92]),
        };
        let b = Gaussian {
            mean: DVector::from_vec(vec![0.0, 2.0]),
            covariance: DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 9.0])),
        };
        let (s1, s2) = (&a.covariance, &b.covariance);
        let cross = ((s1 * s2).trace() + 2.0 * (s1.determinant() * s2.determinant()).sqrt()).sqrt();
        let want = 1.0 + 4.0 + s1.trace() + s2.trace() - 2.0 * cross;
        assert!((want - 7.294096).abs() < 1e-6, "{want}");
        assert!((a.distance(&b) - want).abs() < 1e-9, "{}", a.distance(&b));
        assert!((b.distance(&a) - want).abs() < 1e-9, "{}", b.distance(&a));
    }

    #[test]
    fn fitted_samples_approach_the_true_distance() {
        // A correlated covariance (a rotation of diag(4, 1)) against the identity, fitted from
        // samples: the distance of the fits approaches the exact one as n grows.
        let n = 20_000;
        let p = normal_samples(n, &[0.0, 0.0], &[2.0, 1.0], 1);
        let (c, s) = (0.6f32, 0.8f32);
        let rotated: Vec<f32> = p
            .chunks(2)
            .flat_map(|v| [c * v[0] - s * v[1] + 0.5, s * v[0] + c * v[1]])
            .collect();
        let q = normal_samples(n, &[0.0, 0.0], &[1.0, 1.0], 2);
        let d = Gaussian::fit(&rotated, 2).distance(&Gaussian::fit(&q, 2));
        // Eigenvalues 4 and 1 against 1 and 1: (2 − 1)² + 0 + ‖(0.5, 0)‖² = 1.25.
        assert!((d - 1.25).abs() < 0.1, "{d}");
        let same = Gaussian::fit(&q, 2).distance(&Gaussian::fit(&q, 2));
        assert!(same.abs() < 1e-9, "{same}");
    }
}
