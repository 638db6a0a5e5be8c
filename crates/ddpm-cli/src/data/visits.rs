//! How often one epoch visits each image: every image once (the default), or, with
//! `data.balance`, the smaller classes more often. A class of n_c images gets
//! round(n_max · (n_c / n_max)^(1 − balance)) visits per epoch: its own size at 0, the largest
//! class's at 1 (each class equally often, as PyTorch's `WeightedRandomSampler` with weights
//! 1 / n_c draws them), between the two in between (0.5: in proportion to √n_c). Within a class
//! the visits go through its images in a shuffled order, reshuffled after each pass, so a class
//! of 80 images visited 2,165 times sees each image 27 or 28 times, not by chance.
//! (The colour emoji: 2,165 of their 3,611 images are people, 80 activities.)

use ddpm::NoiseSource;

/// The images one epoch visits, for [`super::BatchOrder`].
#[derive(Debug, Clone, PartialEq)]
pub struct Visits {
    len: usize,
    /// Per class with images: its images and its visits per epoch (`None`: each image once).
    classes: Option<Vec<(Vec<usize>, usize)>>,
}

impl Visits {
    /// Every one of `len` images once per epoch.
    pub fn once(len: usize) -> Self {
        Self { len, classes: None }
    }

    /// `labels`' classes visited by `balance` (0 to 1; 0 is [`Visits::once`]).
    pub fn balanced(labels: &[usize], balance: f64) -> Self {
        if balance == 0.0 {
            return Self::once(labels.len());
        }
        let mut images: Vec<Vec<usize>> = Vec::new();
        for (index, &label) in labels.iter().enumerate() {
            if images.len() <= label {
                images.resize_with(label + 1, Vec::new);
            }
            images[label].push(index);
        }
        images.retain(|class| !class.is_empty());
        let largest = images.iter().map(Vec::len).max().unwrap_or(0) as f64;
        let classes: Vec<(Vec<usize>, usize)> = images
            .into_iter()
            .map(|class| {
                let share = (class.len() as f64 / largest).powf(1.0 - balance);
                let visits = (largest * share).round().max(1.0) as usize;
                (class, visits)
            })
            .collect();
        Self {
            len: classes.iter().map(|(_, visits)| visits).sum(),
            classes: Some(classes),
        }
    }

    /// Images visited per epoch.
    pub fn epoch_len(&self) -> usize {
        self.len
    }

    /// Epoch `epoch`'s visits in order, determined by `seed` and `epoch` alone. Without
    /// balance, the permutation runs have always used (so their batches stay the same).
    pub fn epoch(&self, seed: u64, epoch: u64) -> Vec<usize> {
        let mut rng = NoiseSource::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ epoch);
        let mut order: Vec<usize> = match &self.classes {
            None => (0..self.len).collect(),
            Some(classes) => {
                let mut order = Vec::with_capacity(self.len);
                for (class, visits) in classes {
                    let mut pass = class.clone();
                    let mut left = *visits;
                    while left > 0 {
                        shuffle(&mut pass, &mut rng);
                        let take = left.min(pass.len());
                        order.extend_from_slice(&pass[..take]);
                        left -= take;
                    }
                }
                order
            }
        };
        shuffle(&mut order, &mut rng);
        order
    }
}

fn shuffle(items: &mut [usize], rng: &mut NoiseSource) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How often each image comes up in one epoch.
    fn counts(visits: &Visits, images: usize, epoch: u64) -> Vec<usize> {
        let mut counts = vec![0; images];
        visits.epoch(7, epoch).iter().for_each(|&i| counts[i] += 1);
        counts
    }

    #[test]
    fn without_balance_an_epoch_is_a_permutation() {
        let labels = [0, 0, 0, 1, 2, 2];
        assert_eq!(Visits::balanced(&labels, 0.0), Visits::once(6));
        assert_eq!(counts(&Visits::once(6), 6, 3), vec![1; 6]);
    }

    #[test]
    fn full_balance_visits_every_class_as_often_as_the_largest() {
        // Class 0: images 0..8; class 1: 8 and 9; class 2 (label 3; 2 has none): image 10.
        let labels: Vec<usize> = [vec![0; 8], vec![1, 1], vec![3]].concat();
        let visits = Visits::balanced(&labels, 1.0);
        assert_eq!(visits.epoch_len(), 24);
        for epoch in 0..3 {
            let counts = counts(&visits, 11, epoch);
            assert_eq!(counts, [vec![1; 8], vec![4, 4], vec![8]].concat());
        }
        assert_ne!(visits.epoch(7, 0), visits.epoch(7, 1));
        assert_eq!(visits.epoch(7, 1), visits.epoch(7, 1));
    }

    #[test]
    fn half_balance_visits_in_proportion_to_the_square_root() {
        let labels: Vec<usize> = [vec![0; 16], vec![1; 4]].concat();
        let visits = Visits::balanced(&labels, 0.5);
        // 16 · √(4 / 16) = 8 visits of class 1: each of its images twice.
        assert_eq!(visits.epoch_len(), 24);
        assert_eq!(counts(&visits, 20, 0), [vec![1; 16], vec![2; 4]].concat());
    }

    #[test]
    fn a_class_goes_through_all_its_images_before_repeating_one() {
        // The emoji's activities against its people: 80 images, 2,165 visits.
        let labels: Vec<usize> = [vec![0; 2165], vec![1; 80]].concat();
        let visits = Visits::balanced(&labels, 1.0);
        let counts = counts(&visits, labels.len(), 0);
        assert!(counts[..2165].iter().all(|&c| c == 1));
        let activities = &counts[2165..];
        assert_eq!(activities.iter().sum::<usize>(), 2165);
        assert!(
            activities.iter().all(|&c| c == 27 || c == 28),
            "{activities:?}"
        );
    }
}
