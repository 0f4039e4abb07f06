export async function main(_argv: string[]): Promise<number> {
  process.stderr.write('dvote: not implemented yet\n');
  return 2;
}
