//! Where things go in the cluster drawing (an SVG of `SIZE` × `SIZE` units).

use shared::raft::NodeId;

pub const SIZE: f64 = 600.0;
pub const RADIUS: f64 = 205.0;
pub const NODE_R: f64 = 48.0;
/// Servers are drawn this much bigger in presentation mode (CSS scales them; see style.css).
pub const PRESENTATION_SCALE: f64 = 1.25;

/// Room kept below the lowest server for its votes, and above the highest for its badges.
const BELOW: f64 = 95.0;
const ABOVE: f64 = 75.0;

/// Servers evenly on a circle, the first at the top, the whole figure centred vertically (an
/// odd number of servers is not symmetric top to bottom).
pub fn positions(ids: &[NodeId]) -> Vec<(NodeId, f64, f64)> {
    let n = ids.len().max(1) as f64;
    let mut placed: Vec<(NodeId, f64, f64)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let angle = -std::f64::consts::FRAC_PI_2 + i as f64 * std::f64::consts::TAU / n;
            (*id, SIZE / 2.0 + RADIUS * angle.cos(), SIZE / 2.0 + RADIUS * angle.sin())
        })
        .collect();
    let top = placed.iter().map(|p| p.2).fold(f64::MAX, f64::min) - ABOVE;
    let bottom = placed.iter().map(|p| p.2).fold(f64::MIN, f64::max) + BELOW;
    let shift = (SIZE - top - bottom) / 2.0;
    for p in &mut placed {
        p.2 += shift;
    }
    placed
}

/// A regular polygon's points around the origin.
pub fn polygon(sides: usize, r: f64, rotate: f64) -> String {
    (0..sides)
        .map(|i| {
            let a = rotate + i as f64 * std::f64::consts::TAU / sides as f64;
            format!("{:.1},{:.1}", r * a.cos(), r * a.sin())
        })
        .collect::<Vec<_>>()
        .join(" ")
}
