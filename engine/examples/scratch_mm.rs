use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use std::time::Instant;
fn main() {
    let dev = Default::default();
    let (k, n) = (1024usize, 3072usize);
    let w: Vec<f32> = (0..k*n).map(|i| ((i % 97) as f32) * 1e-3).collect();
    let wt = Tensor::<Flex, 2>::from_data(TensorData::new(w.clone(), [n, k]), &dev);
    let view = wt.clone().transpose();
    let contig = Tensor::<Flex, 2>::from_data(TensorData::new(view.clone().into_data().iter::<f32>().collect::<Vec<f32>>(), [k, n]), &dev);
    for m in [1usize, 2, 4, 8, 17] {
        let x = Tensor::<Flex, 2>::from_data(TensorData::new(vec![0.5f32; m*k], [m, k]), &dev);
        for (name, rhs) in [("view", &view), ("contig", &contig)] {
            let mut ts = vec![];
            for _ in 0..20 { let t = Instant::now(); let y = x.clone().matmul(rhs.clone()); let _ = y.into_data(); ts.push(t.elapsed().as_secs_f64()*1e3); }
            ts.sort_by(f64::total_cmp);
            println!("m={m} {name}: {:.3} ms", ts[10]);
        }
    }
}
