//! Statements for both engines, written once: `query(sql).bind(..)` then `execute`,
//! `fetch_optional`, `fetch_one` or `fetch_all` on a connection or transaction ([`Exec`]).
//! PostgreSQL statements go through sqlx; SQLite's run on the calling thread through rusqlite
//! with a per-connection statement cache (no worker thread, no round trip: a SQLite statement
//! on a warm page cache takes microseconds).
//!
//! Values are TEXT or 64-bit integers (the schema has no other type); `$n` placeholders are
//! bound by name on SQLite, where their index is their order of first appearance.

use super::{Result, StoreError};
use rusqlite::types::{Null, ValueRef};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row as _};
use std::marker::PhantomData;
use std::sync::Arc;

/// A bound value.
#[derive(Debug, Clone)]
pub(super) enum Arg {
    Int(i64),
    Text(String),
    /// NULL of an integer column (PostgreSQL wants a typed NULL).
    NullInt,
    NullText,
}

/// What `.bind()` takes.
pub(super) trait Bind {
    fn arg(self) -> Arg;
}

/// The NULL of a bindable type.
pub(super) trait NullOf {
    const NULL: Arg;
}

impl Bind for i64 {
    fn arg(self) -> Arg {
        Arg::Int(self)
    }
}
impl NullOf for i64 {
    const NULL: Arg = Arg::NullInt;
}
impl Bind for &str {
    fn arg(self) -> Arg {
        Arg::Text(self.to_owned())
    }
}
impl NullOf for &str {
    const NULL: Arg = Arg::NullText;
}
impl Bind for String {
    fn arg(self) -> Arg {
        Arg::Text(self)
    }
}
impl NullOf for String {
    const NULL: Arg = Arg::NullText;
}
impl Bind for &String {
    fn arg(self) -> Arg {
        Arg::Text(self.clone())
    }
}
impl<T: Bind + NullOf> Bind for Option<T> {
    fn arg(self) -> Arg {
        self.map_or(T::NULL, Bind::arg)
    }
}
impl Bind for &Option<String> {
    fn arg(self) -> Arg {
        self.as_deref().arg()
    }
}
impl Bind for &Option<i64> {
    fn arg(self) -> Arg {
        (*self).arg()
    }
}

/// A connection or transaction statements run on.
pub(super) trait Exec: Send {
    fn target(&mut self) -> Target<'_>;
}

pub(super) enum Target<'a> {
    Pg(&'a mut AnyConnection),
    Lite(&'a mut rusqlite::Connection),
}

/// A statement and its values.
#[must_use]
pub(super) struct Query {
    sql: &'static str,
    args: Vec<Arg>,
}

pub(super) fn query(sql: &'static str) -> Query {
    Query {
        sql,
        args: Vec::new(),
    }
}

/// [`query`] whose rows are records.
pub(super) fn query_as<T: FromRow>(sql: &'static str) -> QueryAs<T> {
    QueryAs(query(sql), PhantomData)
}

/// [`query`] whose rows are one value.
pub(super) fn query_scalar<T: Col>(sql: &'static str) -> QueryScalar<T> {
    QueryScalar(query(sql), PhantomData)
}

/// How many rows a statement changed.
pub(super) struct Done(u64);

impl Done {
    pub(super) fn rows_affected(&self) -> u64 {
        self.0
    }
}

impl Query {
    pub(super) fn bind(mut self, v: impl Bind) -> Self {
        self.args.push(v.arg());
        self
    }

    pub(super) async fn execute<E: Exec + ?Sized>(self, db: &mut E) -> Result<Done> {
        match db.target() {
            Target::Pg(c) => Ok(Done(self.pg().execute(c).await?.rows_affected())),
            Target::Lite(c) => Ok(Done(lite(c, self.sql, &self.args, Rows::None)?.0)),
        }
    }

    pub(super) async fn fetch_all<E: Exec + ?Sized>(self, db: &mut E) -> Result<Vec<Row>> {
        match db.target() {
            Target::Pg(c) => Ok(self
                .pg()
                .fetch_all(c)
                .await?
                .into_iter()
                .map(Row::Pg)
                .collect()),
            Target::Lite(c) => Ok(lite(c, self.sql, &self.args, Rows::All)?.1),
        }
    }

    pub(super) async fn fetch_optional<E: Exec + ?Sized>(self, db: &mut E) -> Result<Option<Row>> {
        match db.target() {
            Target::Pg(c) => Ok(self.pg().fetch_optional(c).await?.map(Row::Pg)),
            Target::Lite(c) => Ok(lite(c, self.sql, &self.args, Rows::First)?
                .1
                .into_iter()
                .next()),
        }
    }

    pub(super) async fn fetch_one<E: Exec + ?Sized>(self, db: &mut E) -> Result<Row> {
        self.fetch_optional(db)
            .await?
            .ok_or_else(|| StoreError::Db("the statement returned no row".into()))
    }

    fn pg(self) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
        let mut q = sqlx::query(self.sql);
        for a in self.args {
            q = match a {
                Arg::Int(i) => q.bind(i),
                Arg::Text(s) => q.bind(s),
                Arg::NullInt => q.bind(None::<i64>),
                Arg::NullText => q.bind(None::<String>),
            };
        }
        q
    }
}

#[must_use]
pub(super) struct QueryAs<T>(Query, PhantomData<T>);

impl<T: FromRow> QueryAs<T> {
    pub(super) fn bind(self, v: impl Bind) -> Self {
        QueryAs(self.0.bind(v), PhantomData)
    }

    pub(super) async fn fetch_optional<E: Exec + ?Sized>(self, db: &mut E) -> Result<Option<T>> {
        self.0
            .fetch_optional(db)
            .await?
            .as_ref()
            .map(T::from_row)
            .transpose()
    }

    pub(super) async fn fetch_all<E: Exec + ?Sized>(self, db: &mut E) -> Result<Vec<T>> {
        self.0
            .fetch_all(db)
            .await?
            .iter()
            .map(T::from_row)
            .collect()
    }
}

#[must_use]
pub(super) struct QueryScalar<T>(Query, PhantomData<T>);

impl<T: Col> QueryScalar<T> {
    pub(super) fn bind(self, v: impl Bind) -> Self {
        QueryScalar(self.0.bind(v), PhantomData)
    }

    pub(super) async fn fetch_optional<E: Exec + ?Sized>(self, db: &mut E) -> Result<Option<T>> {
        self.0
            .fetch_optional(db)
            .await?
            .map(|r| r.first())
            .transpose()
    }

    pub(super) async fn fetch_one<E: Exec + ?Sized>(self, db: &mut E) -> Result<T> {
        self.0.fetch_one(db).await?.first()
    }

    #[cfg(test)]
    pub(super) async fn fetch_all<E: Exec + ?Sized>(self, db: &mut E) -> Result<Vec<T>> {
        self.0.fetch_all(db).await?.iter().map(Row::first).collect()
    }
}

/// A value read from SQLite.
#[derive(Debug, Clone)]
pub(super) enum Val {
    Int(i64),
    Text(String),
    Null,
}

/// A result row.
pub(super) enum Row {
    Pg(AnyRow),
    Lite {
        names: Arc<[Box<str>]>,
        vals: Vec<Val>,
    },
}

impl Row {
    /// The column `name`.
    pub(super) fn try_get<T: Col>(&self, name: &str) -> Result<T> {
        match self {
            Row::Pg(r) => Ok(r.try_get::<T, _>(name)?),
            Row::Lite { names, vals } => {
                let i = names
                    .iter()
                    .position(|n| &**n == name)
                    .ok_or_else(|| StoreError::Db(format!("no column `{name}`")))?;
                T::from_lite(&vals[i]).ok_or_else(|| bad_column(name, &vals[i]))
            }
        }
    }

    /// The first column.
    fn first<T: Col>(&self) -> Result<T> {
        match self {
            Row::Pg(r) => Ok(r.try_get::<T, _>(0)?),
            Row::Lite { names, vals } => match vals.first() {
                Some(v) => T::from_lite(v).ok_or_else(|| bad_column(&names[0], v)),
                None => Err(StoreError::Db("the statement returned no column".into())),
            },
        }
    }
}

fn bad_column(name: &str, v: &Val) -> StoreError {
    StoreError::Corrupt(format!("column `{name}` holds an unexpected value: {v:?}"))
}

/// A column type: TEXT or a 64-bit integer, maybe NULL.
pub(super) trait Col: Sized + for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any> {
    fn from_lite(v: &Val) -> Option<Self>;
}

impl Col for i64 {
    fn from_lite(v: &Val) -> Option<Self> {
        match v {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl Col for String {
    fn from_lite(v: &Val) -> Option<Self> {
        match v {
            Val::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl<T: Col> Col for Option<T> {
    fn from_lite(v: &Val) -> Option<Self> {
        match v {
            Val::Null => Some(None),
            v => T::from_lite(v).map(Some),
        }
    }
}

/// A record read from a row by column name.
pub(super) trait FromRow: Sized {
    fn from_row(r: &Row) -> Result<Self>;
}

/// `impl FromRow` for a record whose fields are named as its columns.
macro_rules! from_row {
    ($($t:ident { $($f:ident),* $(,)? })*) => {$(
        impl $crate::store::query::FromRow for $t {
            fn from_row(r: &$crate::store::query::Row) -> $crate::store::Result<Self> {
                Ok($t { $($f: r.try_get(stringify!($f))?),* })
            }
        }
    )*};
}
pub(super) use from_row;

#[derive(Clone, Copy, PartialEq)]
enum Rows {
    None,
    First,
    All,
}

/// `$1` … `$32`: SQLite's names of the placeholders.
const PLACEHOLDERS: [&str; 32] = [
    "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15",
    "$16", "$17", "$18", "$19", "$20", "$21", "$22", "$23", "$24", "$25", "$26", "$27", "$28",
    "$29", "$30", "$31", "$32",
];

/// Run `sql` on SQLite: rows changed, and the rows wanted.
fn lite(
    c: &mut rusqlite::Connection,
    sql: &str,
    args: &[Arg],
    want: Rows,
) -> Result<(u64, Vec<Row>)> {
    let mut st = c.prepare_cached(sql)?;
    if args.len() != st.parameter_count() || args.len() > PLACEHOLDERS.len() {
        return Err(StoreError::Db(format!(
            "{} values bound to a statement with {} placeholders",
            args.len(),
            st.parameter_count()
        )));
    }
    for (a, name) in args.iter().zip(PLACEHOLDERS) {
        let i = st
            .parameter_index(name)?
            .ok_or_else(|| StoreError::Db(format!("no placeholder {name} in the statement")))?;
        match a {
            Arg::Int(v) => st.raw_bind_parameter(i, v)?,
            Arg::Text(v) => st.raw_bind_parameter(i, v.as_str())?,
            Arg::NullInt | Arg::NullText => st.raw_bind_parameter(i, Null)?,
        }
    }
    if st.column_count() == 0 {
        return Ok((st.raw_execute()? as u64, Vec::new()));
    }
    let names: Arc<[Box<str>]> = st.column_names().into_iter().map(Box::from).collect();
    let mut out = Vec::new();
    let mut rows = st.raw_query();
    while let Some(r) = rows.next()? {
        if want == Rows::None || (want == Rows::First && !out.is_empty()) {
            continue; // run to the end: a RETURNING statement changes every row it returns
        }
        let mut vals = Vec::with_capacity(names.len());
        for i in 0..names.len() {
            vals.push(match r.get_ref(i)? {
                ValueRef::Integer(v) => Val::Int(v),
                ValueRef::Text(t) => Val::Text(
                    std::str::from_utf8(t)
                        .map_err(|_| {
                            StoreError::Corrupt(format!("column `{}` is not UTF-8", names[i]))
                        })?
                        .to_owned(),
                ),
                ValueRef::Null => Val::Null,
                _ => {
                    return Err(StoreError::Corrupt(format!(
                        "column `{}` is neither TEXT nor an integer",
                        names[i]
                    )));
                }
            });
        }
        out.push(Row::Lite {
            names: names.clone(),
            vals,
        });
    }
    drop(rows);
    Ok((c.changes(), out))
}
