use specsweep_engine::{Engine, LoadOptions};
use std::path::Path;
fn main() {
    for name in ["qwen3moe-tiny","qwen3moe-nonorm","qwen3moe-4e","qwen2moe-tiny","qwen3-mtp-tiny","qwen3-mtp-deepseek-names"] {
        let dir = Path::new("tests/fixtures").join(name);
        let exp: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        let ids: Vec<u32> = exp["token_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let e = match Engine::load(&dir, &LoadOptions::default()) { Ok(e) => e, Err(err) => { println!("{name}: {err}"); continue; } };
        let mut c = e.new_cache(64).unwrap();
        let out = e.forward(&ids, &mut c, true).unwrap();
        let mut maxd = 0f32;
        for (i,row) in exp["logits"].as_array().unwrap().iter().enumerate() {
            for (j,v) in row.as_array().unwrap().iter().enumerate() { maxd = maxd.max((v.as_f64().unwrap() as f32 - out.row(i)[j]).abs()); }
        }
        print!("{name}: logits maxdiff {maxd:e} touched {:?}", out.experts_touched);
        if e.has_mtp() {
            let d = e.config().hidden_size; let n = ids.len();
            let mut mc = e.new_mtp_cache(n).unwrap();
            let m = e.mtp_forward(&ids[1..], &out.hidden.as_ref().unwrap()[..(n-1)*d], &mut mc).unwrap();
            let mut maxd = 0f32;
            for (i,row) in exp["mtp_logits"].as_array().unwrap().iter().enumerate() {
                for (j,v) in row.as_array().unwrap().iter().enumerate() { maxd = maxd.max((v.as_f64().unwrap() as f32 - m.row(i)[j]).abs()); }
            }
            print!(" mtp maxdiff {maxd:e}");
        }
        println!();
    }
}
