//! The sql provider's rows and connections: the bounded connection set
//! (one deadline for waiting, connecting and the query), reading a
//! PostgreSQL or SQLite row into cells, and the response object built from
//! them (the hash column kept apart).

use super::*;

/// The query's bound values.
pub(super) struct Args<'a> {
    pub(super) username: &'a str,
    /// `Some` in salted mode: `$2`, NULL for a key login.
    pub(super) digest: Option<Option<&'a str>>,
}

pub(super) enum Failure {
    Connect(String),
    Query(String),
}

/// One column of the row, as read.
pub(super) enum Cell {
    Null,
    Text(String),
    Json(Value),
    List(Vec<String>),
    /// A type this provider does not read (named).
    Unsupported(String),
}

pub(super) struct Record {
    pub(super) columns: Vec<(String, Cell)>,
}

/// The stored hash, as the row had it.
pub(super) enum HashCell {
    /// The row has no such column.
    Missing,
    /// NULL or empty.
    Absent,
    NotText(String),
    Text(String),
}

pub(super) struct Built {
    pub(super) response: Map<String, Value>,
    pub(super) hash: HashCell,
    pub(super) unknown: Vec<String>,
}

/// The warning that names the columns that are not response fields, once
/// per answer (SPEC section 3: by name, never by value).
pub(super) fn unknown_warning(kind: &str, unknown: &[String]) -> Option<String> {
    let names: Map<String, Value> = unknown
        .iter()
        .map(|name| (name.clone(), Value::Null))
        .collect();
    crate::response::unknown_fields_warning(kind, &names, str::to_owned)
}

/// Authorized_keys lines from a text column: a JSON array, or one key per
/// line (blank lines and `#` comments skipped).
pub(super) fn key_lines(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text)
            .map_err(|e| format!("column PublicKeys is not a JSON array: {e}"));
    }
    Ok(Value::Array(
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| Value::String(line.to_owned()))
            .collect(),
    ))
}

/// The response object from the row; the hash column kept apart (never in
/// the response), other columns named for the warning.
pub(super) fn build_response(row: Record, hash_column: Option<&str>) -> Result<Built, String> {
    let mut response = Map::new();
    let mut unknown = Vec::new();
    let mut hash = HashCell::Missing;
    // An exact match of the hash column wins over a case-insensitive one.
    let exact_hash = hash_column.is_some_and(|c| row.columns.iter().any(|(n, _)| n == c));
    for (name, cell) in row.columns {
        let is_hash = hash_column.is_some_and(|column| {
            if exact_hash {
                name == column
            } else {
                name.eq_ignore_ascii_case(column)
            }
        });
        if is_hash {
            if !matches!(hash, HashCell::Missing) {
                return Err(format!("the query returns the column {name:?} twice"));
            }
            hash = match cell {
                Cell::Null => HashCell::Absent,
                Cell::Text(text) if text.is_empty() => HashCell::Absent,
                Cell::Text(text) => HashCell::Text(text),
                Cell::Json(_) => HashCell::NotText("json".to_owned()),
                Cell::List(_) => HashCell::NotText("array".to_owned()),
                Cell::Unsupported(type_name) => HashCell::NotText(type_name),
            };
            continue;
        }
        let Some(field) = FIELDS.iter().find(|f| f.eq_ignore_ascii_case(&name)) else {
            unknown.push(name);
            continue;
        };
        if response.contains_key(*field) {
            return Err(format!("the query returns more than one {field} column"));
        }
        let value = match cell {
            Cell::Null => continue,
            Cell::Json(Value::Null) => continue,
            Cell::Text(text) | Cell::Json(Value::String(text)) => {
                if text.trim().is_empty() {
                    continue;
                }
                match *field {
                    "PublicKeys" => key_lines(&text)?,
                    "PosixProfile" => serde_json::from_str(&text)
                        .map_err(|e| format!("column {name} is not JSON: {e}"))?,
                    // Policy, HomeDirectoryDetails and SessionTags may be
                    // JSON in a string, as AWS sends them: validation reads it.
                    _ => Value::String(text),
                }
            }
            Cell::Json(value) => value,
            Cell::List(items) => Value::Array(items.into_iter().map(Value::String).collect()),
            Cell::Unsupported(type_name) => {
                return Err(format!(
                    "column {name} is of type {type_name}, which wharf does not read (use text \
                     or json)"
                ));
            }
        };
        response.insert((*field).to_owned(), value);
    }
    Ok(Built {
        response,
        hash,
        unknown,
    })
}

// ------------------------------------------------------------ connections

/// One open connection, to either database.
pub(super) enum Conn {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// The connections of one provider: a bounded number in use, some idle.
pub(super) struct Connections {
    pub(super) target: Target,
    pub(super) permits: Semaphore,
    pub(super) idle: Mutex<Vec<(Conn, Instant)>>,
}

impl Connections {
    pub(super) fn new(target: Target) -> Connections {
        Connections {
            target,
            permits: Semaphore::new(MAX_CONNECTIONS),
            idle: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Conn, Instant)>> {
        // A Vec push or pop cannot leave it inconsistent.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection that is not too old.
    pub(super) fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.lock();
        idle.retain(|(_, since)| since.elapsed() < IDLE_LIMIT);
        idle.pop().map(|(conn, _)| conn)
    }

    pub(super) fn put_idle(&self, conn: Conn) {
        let mut idle = self.lock();
        if idle.len() < MAX_CONNECTIONS {
            idle.push((conn, Instant::now()));
        }
    }

    pub(super) async fn connect(&self) -> Result<Conn, sqlx::Error> {
        Ok(match &self.target {
            Target::Postgres(options) => Conn::Postgres(options.connect().await?),
            Target::Sqlite(options) => Conn::Sqlite(options.connect().await?),
        })
    }
}

impl Conn {
    /// Runs the query and reads at most two rows. `complete` is false when
    /// rows were left unread (the connection is then not reused).
    pub(super) async fn fetch(
        &mut self,
        sql: &Arc<str>,
        args: &Args<'_>,
    ) -> Result<(Vec<Record>, bool), sqlx::Error> {
        match self {
            Conn::Postgres(conn) => {
                let mut query = sqlx::query(AssertSqlSafe(Arc::clone(sql))).bind(args.username);
                if let Some(digest) = args.digest {
                    query = query.bind(digest);
                }
                first_two(query.fetch(&mut *conn), pg_record).await
            }
            Conn::Sqlite(conn) => {
                let mut query = sqlx::query(AssertSqlSafe(Arc::clone(sql))).bind(args.username);
                if let Some(digest) = args.digest {
                    query = query.bind(digest);
                }
                first_two(query.fetch(&mut *conn), sqlite_record).await
            }
        }
    }
}

pub(super) fn pg_record(row: &PgRow) -> Record {
    let columns = row
        .columns()
        .iter()
        .map(|column| {
            let i = column.ordinal();
            (column.name().to_owned(), pg_cell(row, i))
        })
        .collect();
    Record { columns }
}

pub(super) fn pg_cell(row: &PgRow, i: usize) -> Cell {
    match row.try_get_raw(i) {
        Ok(raw) if raw.is_null() => return Cell::Null,
        Ok(_) => {}
        Err(error) => return Cell::Unsupported(error.to_string()),
    }
    let type_name = row.column(i).type_info().name().to_ascii_uppercase();
    let decoded = match type_name.as_str() {
        "JSON" | "JSONB" => row.try_get::<Value, _>(i).map(Cell::Json),
        "INT2" => row.try_get::<i16, _>(i).map(|n| Cell::Json(n.into())),
        "INT4" => row.try_get::<i32, _>(i).map(|n| Cell::Json(n.into())),
        "INT8" => row.try_get::<i64, _>(i).map(|n| Cell::Json(n.into())),
        "BOOL" => row.try_get::<bool, _>(i).map(|b| Cell::Json(b.into())),
        name if name.ends_with("[]") => row.try_get::<Vec<String>, _>(i).map(Cell::List),
        // TEXT, VARCHAR, BPCHAR, NAME, CITEXT...: whatever sqlx reads as text.
        _ => row.try_get::<String, _>(i).map(Cell::Text),
    };
    decoded.unwrap_or(Cell::Unsupported(type_name))
}

pub(super) fn sqlite_record(row: &SqliteRow) -> Record {
    let columns = row
        .columns()
        .iter()
        .map(|column| {
            let i = column.ordinal();
            (column.name().to_owned(), sqlite_cell(row, i))
        })
        .collect();
    Record { columns }
}

pub(super) fn sqlite_cell(row: &SqliteRow, i: usize) -> Cell {
    // The value's own type: SQLite columns are typed by value.
    let type_name = match row.try_get_raw(i) {
        Ok(raw) if raw.is_null() => return Cell::Null,
        Ok(raw) => raw.type_info().name().to_ascii_uppercase(),
        Err(error) => return Cell::Unsupported(error.to_string()),
    };
    let decoded = match type_name.as_str() {
        "INTEGER" | "INT8" | "BIGINT" | "INT" => row
            .try_get_unchecked::<i64, _>(i)
            .map(|n| Cell::Json(n.into())),
        "REAL" => row.try_get_unchecked::<f64, _>(i).map(|n| {
            serde_json::Number::from_f64(n).map_or(Cell::Null, |n| Cell::Json(Value::Number(n)))
        }),
        "TEXT" => row.try_get_unchecked::<String, _>(i).map(Cell::Text),
        _ => return Cell::Unsupported(type_name),
    };
    decoded.unwrap_or(Cell::Unsupported(type_name))
}

/// At most two rows of a result (a second one is already one too many),
/// and whether the result was read to its end.
async fn first_two<R>(
    mut rows: impl futures::Stream<Item = Result<R, sqlx::Error>> + Unpin,
    record: fn(&R) -> Record,
) -> Result<(Vec<Record>, bool), sqlx::Error> {
    let mut records = Vec::new();
    while let Some(row) = rows.try_next().await? {
        records.push(record(&row));
        if records.len() == 2 {
            return Ok((records, false));
        }
    }
    Ok((records, true))
}
