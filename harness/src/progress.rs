//! indicatif progress for `specsweep run`: one bar for units (cell × repetition) with an ETA, and
//! a spinner counting generated tokens with their rate. Drawn on stderr; indicatif hides it when
//! stderr is not a terminal, so logs and CI output stay clean.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::matrix::Cell;
use crate::runner::Progress;

/// The two progress bars of a run.
pub struct RunProgress {
    _multi: MultiProgress,
    units: ProgressBar,
    tokens: ProgressBar,
}

impl RunProgress {
    /// Bars drawn on stderr (hidden when stderr is not a terminal).
    pub fn stderr() -> RunProgress {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let units = multi.add(ProgressBar::new(0));
        units.set_style(
            ProgressStyle::with_template(
                "{prefix:>6} [{bar:30}] {pos}/{len} units, ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        units.set_prefix("cells");
        let tokens = multi.add(ProgressBar::new_spinner());
        tokens.set_style(
            ProgressStyle::with_template("{prefix:>6} {spinner} {pos} tokens ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        tokens.set_prefix("tokens");
        RunProgress {
            _multi: multi,
            units,
            tokens,
        }
    }

    /// Remove the bars.
    pub fn finish(&self) {
        self.units.finish_and_clear();
        self.tokens.finish_and_clear();
    }
}

impl Progress for RunProgress {
    fn start(&self, total: u64, done: u64) {
        self.units.set_length(total);
        self.units.set_position(done);
        // ETA from this session's pace only: skipped units took no time.
        self.units.reset_eta();
    }

    fn unit_started(&self, cell: &Cell, repetition: u32) {
        self.units
            .set_message(format!("{} r{repetition}: {}", cell.id, cell.summary()));
    }

    fn tokens(&self, n: u64) {
        self.tokens.inc(n);
    }

    fn unit_finished(&self) {
        self.units.inc(1);
    }
}
