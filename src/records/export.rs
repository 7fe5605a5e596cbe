//! Contact records written out for people and spreadsheets: JSON Lines (everything) or CSV (the columns a
//! manager pivots on). Used by `knappval contacts`; knows nothing about where the records came from.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use super::record::{ContactRecord, format_timestamp};

/// How [`export`] writes records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line, exactly as the HTTP API returns them (steps included).
    Jsonl,
    /// RFC 4180 CSV with a header row; the path as `root>it`, announcements as `email-down;phones-down`,
    /// steps left out.
    // The columns are CSV_HEADER's.
    Csv,
}

impl ExportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Csv => "csv",
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown export format '{0}' (expected jsonl or csv)")]
pub struct UnknownExportFormat(pub String);

impl FromStr for ExportFormat {
    type Err = UnknownExportFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "jsonl" => Ok(ExportFormat::Jsonl),
            "csv" => Ok(ExportFormat::Csv),
            _ => Err(UnknownExportFormat(s.to_string())),
        }
    }
}

/// The CSV columns, in order. Steps are left out: a JSON blob per cell breaks spreadsheets' cell limits and
/// helps no pivot table; JSONL carries them.
pub const CSV_HEADER: [&str; 22] = [
    "id",
    "call_id",
    "from",
    "to",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_ms",
    "digits",
    "path",
    "function",
    "outcome",
    "transfer_target",
    "transferred_at",
    "end_reason",
    "announcements",
    "language",
    "queue_entered_at",
    "queue_wait_ms",
    "answered_by",
    "menu_version",
    // Last, so that the columns before it keep the places they had.
    "queue",
];

/// Writes `records` in `format` to `out`, in the order given.
pub fn export(
    records: &[ContactRecord],
    format: ExportFormat,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        ExportFormat::Jsonl => {
            for record in records {
                serde_json::to_writer(&mut *out, record)?;
                out.write_all(b"\n")?;
            }
        }
        ExportFormat::Csv => {
            let time =
                |t: Option<time::OffsetDateTime>| t.map(format_timestamp).unwrap_or_default();
            let rows = records.iter().map(|record| {
                [
                    record.id.clone(),
                    record.call_id.clone(),
                    record.from.clone(),
                    record.to.clone(),
                    format_timestamp(record.started_at),
                    time(record.answered_at),
                    time(record.ended_at),
                    record
                        .duration_ms()
                        .map(|ms| ms.to_string())
                        .unwrap_or_default(),
                    record.digits.clone(),
                    record.path.join(">"),
                    record.function.clone().unwrap_or_default(),
                    record
                        .outcome
                        .map(|o| o.as_str().to_string())
                        .unwrap_or_default(),
                    record.transfer_target.clone().unwrap_or_default(),
                    time(record.transferred_at),
                    record.end_reason.clone().unwrap_or_default(),
                    record.announcements.join(";"),
                    record.language.clone().unwrap_or_default(),
                    time(record.queue_entered_at),
                    record
                        .queue_wait_ms
                        .map(|ms| ms.to_string())
                        .unwrap_or_default(),
                    record.answered_by.clone().unwrap_or_default(),
                    record.menu_version.clone().unwrap_or_default(),
                    record.queue.clone().unwrap_or_default(),
                ]
            });
            write_csv(out, CSV_HEADER, rows)?;
        }
    }
    out.flush()
}

/// Writes `header` and `rows` as RFC 4180 CSV with CRLF line ends, quoting only where needed. Every cell is
/// guarded against formula injection: `from`, `to` and `call_id` come from the caller's INVITE, and a From user
/// of `=HYPERLINK(...)` must reach the manager's spreadsheet as text, not as a formula (OWASP "CSV injection").
pub fn write_csv<R, C>(
    out: &mut dyn Write,
    header: impl IntoIterator<Item = impl AsRef<str>>,
    rows: R,
) -> io::Result<()>
where
    R: IntoIterator<Item = C>,
    C: IntoIterator<Item = String>,
{
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    writer.write_record(header.into_iter().map(|cell| guarded(cell.as_ref())))?;
    for row in rows {
        writer.write_record(row.into_iter().map(|cell| guarded(&cell)))?;
    }
    writer.flush()
}

/// `cell`, with a leading `'` when a spreadsheet would evaluate it.
fn guarded(cell: &str) -> String {
    if starts_like_formula(cell) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

/// Whether a spreadsheet would evaluate `cell`. A phone number such as `+46701234567` or `-` separated digits is
/// left alone: it is the commonest caller id and harmless.
fn starts_like_formula(cell: &str) -> bool {
    let mut chars = cell.chars();
    match chars.next() {
        Some('=' | '@' | '\t' | '\r') => true,
        Some('+' | '-') => {
            let rest = chars.as_str();
            !(rest.chars().any(|c| c.is_ascii_digit())
                && rest
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')' | '.' | '/')))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Outcome;
    use time::macros::datetime;

    fn records() -> Vec<ContactRecord> {
        let mut tricky = ContactRecord::started(
            "c2@trunk",
            "Svensson, \"Kalle\"\nline two",
            "0771100200",
            datetime!(2026-11-23 10:16 UTC),
        );
        tricky.id = "0196b4f2-1c3b-7abc-8def-000000000002".into();
        tricky.path = vec!["root".into(), "it".into()];
        tricky.digits = "2#".into();
        let mut done = ContactRecord::started(
            "c1@trunk",
            "+46701234567",
            "0771100200",
            datetime!(2026-11-23 10:15 UTC),
        );
        done.id = "0196b4f2-1c3b-7abc-8def-000000000001".into();
        done.path = vec!["root".into()];
        done.function = Some("kundtjanst".into());
        done.announcements = vec!["email-down".into(), "phones-down".into()];
        done.queue = Some("kundtjanst".into());
        done.queue_entered_at = Some(datetime!(2026-11-23 10:15:04 UTC));
        done.queue_wait_ms = Some(5500);
        done.finish(
            Outcome::Abandoned,
            datetime!(2026-11-23 10:15:09.5 UTC),
            "caller BYE",
        );
        vec![tricky, done]
    }

    fn exported(format: ExportFormat) -> String {
        let mut out = Vec::new();
        export(&records(), format, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn jsonl_is_one_record_per_line_that_reads_back() {
        let text = exported(ExportFormat::Jsonl);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let back: Vec<ContactRecord> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, records());
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn csv_has_a_header_and_quotes_commas_quotes_and_newlines() {
        let text = exported(ExportFormat::Csv);
        assert_eq!(
            text,
            "id,call_id,from,to,started_at,answered_at,ended_at,duration_ms,digits,path,function,outcome,\
             transfer_target,transferred_at,end_reason,announcements,language,queue_entered_at,queue_wait_ms,\
             answered_by,menu_version,queue\r\n\
             0196b4f2-1c3b-7abc-8def-000000000002,c2@trunk,\"Svensson, \"\"Kalle\"\"\nline two\",0771100200,2026-11-23T10:16:00.000Z,,,,2#,root>it,,,,,,,,,,,,\r\n\
             0196b4f2-1c3b-7abc-8def-000000000001,c1@trunk,+46701234567,0771100200,2026-11-23T10:15:00.000Z,,2026-11-23T10:15:09.500Z,9500,,root,\
             kundtjanst,abandoned,,,caller BYE,email-down;phones-down,,2026-11-23T10:15:04.000Z,5500,,,kundtjanst\r\n"
        );
    }

    #[test]
    fn csv_cells_a_spreadsheet_would_run_are_made_text() {
        let cell = |text: &str| {
            let mut out = Vec::new();
            write_csv(&mut out, [text], Vec::<Vec<String>>::new()).unwrap();
            String::from_utf8(out).unwrap().trim_end().to_string()
        };
        assert_eq!(cell("=1+2"), "'=1+2");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("+cmd|' /C calc'!A0"), "'+cmd|' /C calc'!A0");
        assert_eq!(cell("-2+3,x"), "\"'-2+3,x\"");
        assert_eq!(cell("+46 70-123 45 67"), "+46 70-123 45 67");
        assert_eq!(cell("-"), "'-");
        assert_eq!(cell("0701234567"), "0701234567");
    }

    #[test]
    fn formats_parse_by_name() {
        assert_eq!("csv".parse::<ExportFormat>().unwrap(), ExportFormat::Csv);
        assert_eq!(
            "JSONL".parse::<ExportFormat>().unwrap(),
            ExportFormat::Jsonl
        );
        assert!("xlsx".parse::<ExportFormat>().is_err());
        for format in [ExportFormat::Jsonl, ExportFormat::Csv] {
            assert_eq!(format.to_string().parse::<ExportFormat>().unwrap(), format);
        }
    }
}
