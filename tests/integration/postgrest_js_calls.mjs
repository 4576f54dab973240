// postgrest-js calls as its docs show them, run in order by test_db_connect_postgrest_js.py.
// Prints one JSON object: for each named call, what the client returned (data, error, count, status) and the
// status and headers of the HTTP response it received. Reads POSTGREST_JS (the package's entry), API_URL,
// READER_KEY and WRITER_TOKEN from the environment.
const { PostgrestClient } = await import(process.env.POSTGREST_JS);

let last = null;
const recordingFetch = async (...args) => {
  const response = await fetch(...args);
  last = { status: response.status, headers: Object.fromEntries(response.headers), method: args[1]?.method };
  return response;
};

const connect = (token, schema = "consumption") =>
  new PostgrestClient(process.env.API_URL, {
    schema,
    fetch: recordingFetch,
    headers: { Authorization: `Bearer ${token}` },
  });
const reader = connect(process.env.READER_KEY);
const writer = connect(process.env.WRITER_TOKEN);
const books = () => reader.from("books").select("id");

const calls = {
  select: () => reader.from("books").select("id,title").order("id").limit(2),
  eq: () => books().eq("title", "Untitled").order("id"),
  neq: () => books().neq("author_id", 1).order("id"),
  gt: () => books().gt("pages", 184).order("id"),
  gte: () => books().gte("pages", 184).order("id"),
  lt: () => books().lt("pages", 185).order("id"),
  lte: () => books().lte("pages", 165).order("id"),
  like: () => books().like("title", "%Cities").order("id"),
  ilike: () => books().ilike("title", "the%").order("id"),
  likeAnyOf: () => books().likeAnyOf("title", ["%Cities", "Un%"]).order("id"),
  is: () => books().is("author_id", null).order("id"),
  in: () => books().in("id", [1, 3]).order("id"),
  match: () => books().match({ author_id: 1, pages: 184 }).order("id"),
  or: () => books().or("pages.lt.170,title.eq.Untitled").order("id"),
  not: () => books().not("pages", "is", null).order("id"),
  containsArray: () => books().contains("tags", ["scifi"]).order("id"),
  containedBy: () => books().containedBy("tags", ["scifi", "politics"]).order("id"),
  overlapsArray: () => books().overlaps("tags", ["fable", "politics"]).order("id"),
  containsRange: () => books().contains("period", "[1971,1972)").order("id"),
  overlapsRange: () => books().overlaps("period", "[1974,1980)").order("id"),
  rangeGt: () => books().rangeGt("period", "[1961,1970)").order("id"),
  rangeLt: () => books().rangeLt("period", "[1972,1980)").order("id"),
  rangeAdjacent: () => books().rangeAdjacent("period", "[1975,1980)").order("id"),
  containsJson: () => books().contains("meta", { lang: "en" }).order("id"),
  jsonPathFilter: () => books().eq("meta->ed->>year", "1971"),
  fts: () => books().textSearch("summary", "'cities' & 'kublai'"),
  plfts: () => books().textSearch("summary", "twin planets", { type: "plain", config: "english" }),
  phfts: () => books().textSearch("summary", "dreams change", { type: "phrase" }),
  wfts: () => books().textSearch("summary", '"imagined cities" -anarchist', { type: "websearch" }),
  jsonPathSelect: () => reader.from("books").select("id,language:meta->>lang,meta->ed->year").eq("id", 1),
  orderNullsFirst: () => books().order("pages", { ascending: false, nullsFirst: true }),
  range: () => books().order("id").range(1, 2),
  countExact: () => reader.from("books").select("id", { count: "exact" }).order("id").range(0, 1),
  countPlanned: () => reader.from("books").select("id", { count: "planned" }).order("id").range(0, 1),
  countEstimated: () => reader.from("books").select("id", { count: "estimated" }).order("id").range(0, 1),
  head: () => reader.from("books").select("*", { count: "exact", head: true }),
  single: () => reader.from("books").select("id,title").eq("id", 3).single(),
  singleOfMany: () => books().eq("author_id", 1).single(),
  maybeSingleOfNone: () => books().eq("id", 99).maybeSingle(),
  csv: () => reader.from("books").select("id,title,pages").order("id").csv(),
  stripNulls: () => reader.from("books").select("id,pages,meta").eq("id", 4).stripNulls(),
  embedding: () =>
    reader
      .from("authors")
      .select("name,books(title)")
      .order("id")
      .order("title", { referencedTable: "books", ascending: false })
      .limit(1, { referencedTable: "books" }),
  embeddingInner: () => reader.from("authors").select("name,books!inner(title)").eq("books.title", "Invisible Cities"),
  insert: () => writer.from("drafts").insert({ id: 1, title: "first" }).select(),
  bulkInsert: () => writer.from("drafts").insert([{ id: 2, title: "two" }, { id: 3 }]).select(),
  insertSingle: () => writer.from("drafts").insert({ id: 4, title: "four" }).select("id,title").single(),
  insertSingleOfTwo: () => writer.from("drafts").insert([{ id: 5 }, { id: 6 }]).select().single(),
  deleteSingle: () => writer.from("drafts").delete().eq("id", 4).select("id").single(),
  insertEmbedding: () =>
    writer.from("reviews").insert({ id: 1, book_id: 1, stars: 3 }).select("stars,books(title,authors(name))").single(),
  upsert: () => writer.from("drafts").upsert({ id: 1, title: "again" }).select(),
  upsertIgnore: () => writer.from("drafts").upsert({ id: 1, title: "no" }, { ignoreDuplicates: true }).select(),
  update: () => writer.from("drafts").update({ status: "done" }).eq("id", 1).select(),
  maxAffected: () => writer.from("drafts").update({ status: "x" }).gte("id", 0).maxAffected(1).select(),
  updateWithoutFilter: () => writer.from("drafts").update({ status: "x" }),
  delete: () => writer.from("drafts").delete().eq("id", 2).select(),
  deleteMinimal: () => writer.from("drafts").delete().eq("id", 3),
  afterWrites: () => writer.from("drafts").select("*").order("id"),
  missingDefault: () =>
    writer.from("drafts").insert([{ id: 7, status: "set" }, { id: 8 }], { defaultToNull: false }).select("id,status"),
  profile: () => reader.schema("quality").from("checks").select("*"),
  unexposedProfile: () => reader.schema("raw").from("books").select("*"),
  rpcPost: () => reader.rpc("book_count", { min_pages: 180 }),
  rpcGet: () => reader.rpc("book_count", { min_pages: 100 }, { get: true }),
  rpcRows: () => reader.rpc("books_by", { author: "Le Guin" }).select("id,title").lt("pages", 300),
  rpcUnknown: () => reader.rpc("no_such_function", {}),
  unknownColumn: () => reader.from("books").select("nope"),
};

const results = {};
for (const [name, call] of Object.entries(calls)) {
  last = null;
  const { data, error, count, status } = await call();
  results[name] = { data, error, count, status, response: last };
}
console.log(JSON.stringify(results));
