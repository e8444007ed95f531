//! Spreadsheet files in and out: CSV (UTF-8 or Windows-1251, comma, semicolon or tab) and XLSX
//! (the first sheet), read into rows of text; rows of text written out as CSV or XLSX.

use contacts_api::{FileFormat, TextEncoding};
use kernel::{AppError, AppResult};

/// A file's rows: the header row, then the data rows (each as long as the header at least).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sheet {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn refuse(code: &str, message: impl Into<String>) -> AppError {
    AppError::validation("file", code, &message.into())
}

/// XLSX files are ZIP archives; anything else is taken for CSV.
pub fn detect(file_name: &str, data: &[u8]) -> FileFormat {
    if data.starts_with(b"PK\x03\x04") || file_name.to_lowercase().ends_with(".xlsx") {
        FileFormat::Xlsx
    } else {
        FileFormat::Csv
    }
}

pub fn read(data: &[u8], format: FileFormat, encoding: TextEncoding) -> AppResult<Sheet> {
    let mut rows = match format {
        FileFormat::Csv => read_csv(data, encoding)?,
        FileFormat::Xlsx => read_xlsx(data)?,
    };
    // Trailing empty rows (spreadsheets leave them) are not data.
    while rows
        .last()
        .is_some_and(|r| r.iter().all(|c| c.trim().is_empty()))
    {
        rows.pop();
    }
    if rows.is_empty() {
        return Err(refuse("empty", "the file has no rows"));
    }
    let headers: Vec<String> = rows.remove(0).into_iter().map(|h| clean(&h)).collect();
    if headers.iter().all(|h| h.is_empty()) {
        return Err(refuse("no_header", "the first row must name the columns"));
    }
    let width = headers.len();
    for r in rows.iter_mut() {
        if r.len() < width {
            r.resize(width, String::new());
        }
    }
    Ok(Sheet { headers, rows })
}

fn clean(s: &str) -> String {
    s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
        .to_string()
}

fn decode(data: &[u8], encoding: TextEncoding) -> AppResult<String> {
    match encoding {
        TextEncoding::Utf8 => {
            let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
            match std::str::from_utf8(data) {
                Ok(s) => Ok(s.to_string()),
                Err(e) => {
                    let line = 1 + data[..e.valid_up_to()]
                        .iter()
                        .filter(|b| **b == b'\n')
                        .count();
                    Err(refuse(
                        "bad_encoding",
                        format!(
                            "the file is not UTF-8 text (line {line}): save it as \"CSV UTF-8\" or choose the Windows-1251 encoding"
                        ),
                    ))
                }
            }
        }
        TextEncoding::Windows1251 => {
            let (text, _) = encoding_rs::WINDOWS_1251.decode_without_bom_handling(data);
            Ok(text.into_owned())
        }
    }
}

/// The delimiter of a CSV: whichever of `,` `;` tab occurs most in its first line (outside
/// quotes). Excel in Russian locales writes `;`.
fn delimiter(text: &str) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '\n' if !quoted => break,
            ',' if !quoted => counts[0] += 1,
            ';' if !quoted => counts[1] += 1,
            '\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let best = (0..3).max_by_key(|i| (counts[*i], 3 - i)).unwrap_or(0);
    [b',', b';', b'\t'][best]
}

fn read_csv(data: &[u8], encoding: TextEncoding) -> AppResult<Vec<Vec<String>>> {
    let text = decode(data, encoding)?;
    if text.contains('\0') {
        return Err(refuse(
            "bad_encoding",
            "the file holds binary data, not CSV text (for Excel files upload the .xlsx)",
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter(&text))
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| {
            refuse(
                "bad_csv",
                format!("row {}: the CSV cannot be read: {e}", i + 1),
            )
        })?;
        rows.push(rec.iter().map(|c| c.to_string()).collect());
        if rows.len() > contacts_api::MAX_IMPORT_ROWS + 1 {
            return Err(too_many());
        }
    }
    Ok(rows)
}

fn too_many() -> AppError {
    refuse(
        "too_many_rows",
        format!(
            "at most {} rows in one import",
            contacts_api::MAX_IMPORT_ROWS
        ),
    )
}

fn read_xlsx(data: &[u8]) -> AppResult<Vec<Vec<String>>> {
    use calamine::{Data, Reader, Xlsx};
    let mut book = Xlsx::new(std::io::Cursor::new(data))
        .map_err(|e| refuse("bad_xlsx", format!("the XLSX file cannot be read: {e}")))?;
    let range = match book.worksheet_range_at(0) {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            return Err(refuse(
                "bad_xlsx",
                format!("the first sheet cannot be read: {e}"),
            ));
        }
        None => return Err(refuse("empty", "the workbook has no sheets")),
    };
    if range.height() > contacts_api::MAX_IMPORT_ROWS + 1 {
        return Err(too_many());
    }
    // A sheet that starts lower or further right still has its header on its first used row;
    // the row numbers reported are the sheet's own.
    Ok(range
        .rows()
        .map(|r| {
            r.iter()
                .map(|c| match c {
                    Data::Empty => String::new(),
                    Data::String(s) => s.clone(),
                    // Phones typed as numbers come back as floats: no ".0", no exponent.
                    Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e17 => {
                        format!("{}", *f as i64)
                    }
                    Data::Float(f) => f.to_string(),
                    Data::Int(i) => i.to_string(),
                    Data::Bool(b) => b.to_string(),
                    Data::DateTime(d) => excel_date(d.as_f64()),
                    Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
                    Data::Error(_) => String::new(),
                })
                .collect()
        })
        .collect())
}

/// An Excel serial date (days since 1899-12-30) as ISO 8601.
fn excel_date(serial: f64) -> String {
    let base = chrono::NaiveDate::from_ymd_opt(1899, 12, 30).expect("a valid date");
    let days = serial.floor();
    let secs = ((serial - days) * 86_400.0).round() as i64;
    let Some(date) = base.checked_add_signed(chrono::TimeDelta::days(days as i64)) else {
        return serial.to_string();
    };
    if secs == 0 {
        date.format("%Y-%m-%d").to_string()
    } else {
        (date.and_hms_opt(0, 0, 0).expect("midnight") + chrono::TimeDelta::seconds(secs))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    }
}

/// Rows (the first is the header) as a file. CSV gets a byte-order mark so that Excel reads it
/// as UTF-8.
pub fn write(format: FileFormat, rows: &[Vec<String>]) -> AppResult<Vec<u8>> {
    match format {
        FileFormat::Csv => {
            let mut w = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
            for r in rows {
                w.write_record(r)
                    .map_err(|e| AppError::internal(e.to_string()))?;
            }
            w.into_inner()
                .map_err(|e| AppError::internal(e.to_string()))
        }
        FileFormat::Xlsx => {
            let mut book = rust_xlsxwriter::Workbook::new();
            let sheet = book.add_worksheet();
            let bold = rust_xlsxwriter::Format::new().set_bold();
            let e = |e: rust_xlsxwriter::XlsxError| AppError::internal(e.to_string());
            for (i, r) in rows.iter().enumerate() {
                for (j, c) in r.iter().enumerate() {
                    if i == 0 {
                        sheet
                            .write_string_with_format(0, j as u16, c, &bold)
                            .map_err(e)?;
                    } else if !c.is_empty() {
                        sheet.write_string(i as u32, j as u16, c).map_err(e)?;
                    }
                }
            }
            book.save_to_buffer().map_err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_semicolons_bom_and_quotes() {
        let data =
            "\u{feff}Name;Phone;Note\n\"Petrov; Ivan\";+7 916 123-45-67;\"two\nlines\"\n;;\n"
                .as_bytes();
        let s = read(data, FileFormat::Csv, TextEncoding::Utf8).unwrap();
        assert_eq!(s.headers, ["Name", "Phone", "Note"]);
        assert_eq!(s.rows.len(), 1, "the trailing empty row is dropped");
        assert_eq!(
            s.rows[0],
            ["Petrov; Ivan", "+7 916 123-45-67", "two\nlines"]
        );
    }

    #[test]
    fn windows_1251_is_refused_as_utf8_and_read_when_chosen() {
        let (bytes, _, _) = encoding_rs::WINDOWS_1251.encode("Имя,Телефон\nИван,89161234567\n");
        let e = read(&bytes, FileFormat::Csv, TextEncoding::Utf8).unwrap_err();
        assert_eq!(e.fields[0].code, "bad_encoding");
        assert!(e.fields[0].message.contains("line 1"), "{e:?}");
        let s = read(&bytes, FileFormat::Csv, TextEncoding::Windows1251).unwrap();
        assert_eq!(s.headers, ["Имя", "Телефон"]);
        assert_eq!(s.rows[0], ["Иван", "89161234567"]);
    }

    #[test]
    fn empty_and_headerless_files_are_refused() {
        let e = read(b"\n\n", FileFormat::Csv, TextEncoding::Utf8).unwrap_err();
        assert_eq!(e.fields[0].code, "empty");
        let e = read(b",,\n1,2,3\n", FileFormat::Csv, TextEncoding::Utf8).unwrap_err();
        assert_eq!(e.fields[0].code, "no_header");
    }

    #[test]
    fn xlsx_round_trip_keeps_text_and_short_rows() {
        let rows = vec![
            vec!["Name".to_string(), "Phone".to_string()],
            vec!["Anna".to_string(), "+79161234567".to_string()],
            vec!["Boris".to_string(), String::new()],
        ];
        let data = write(FileFormat::Xlsx, &rows).unwrap();
        assert_eq!(detect("export.bin", &data), FileFormat::Xlsx);
        let s = read(&data, FileFormat::Xlsx, TextEncoding::Utf8).unwrap();
        assert_eq!(s.headers, ["Name", "Phone"]);
        assert_eq!(s.rows[0], ["Anna", "+79161234567"]);
        assert_eq!(s.rows[1], ["Boris", ""]);
        let csv = write(FileFormat::Csv, &rows).unwrap();
        let back = read(&csv, FileFormat::Csv, TextEncoding::Utf8).unwrap();
        assert_eq!(back.rows, s.rows);
    }

    #[test]
    fn excel_serial_dates() {
        assert_eq!(excel_date(45000.0), "2023-03-15");
        assert_eq!(excel_date(45000.5), "2023-03-15T12:00:00");
    }
}
