/** jq-web (npm): jq compiled to WebAssembly; the module is a promise of the ready engine. */
declare module 'jq-web' {
  const jq: Promise<{ raw(input: string, filter: string, flags?: string[]): string }>;
  export default jq;
}
