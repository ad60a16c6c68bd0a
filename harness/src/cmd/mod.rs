//! One module per `specsweep` subcommand: its clap `Args` and a `run` function.

pub mod bench;
pub mod compare;
pub mod gate;
pub mod generate;
pub mod logits;
pub mod model_opts;
pub mod models;
pub mod plan;
pub mod report;
pub mod run;
pub mod tokenize;
pub mod worker;
