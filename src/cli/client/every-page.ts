/**
 * The pages of a paginated list call, first to last: `list` is called with
 * each response's `next_page_token` until one comes back empty.
 */
export async function* everyPage<Page extends { nextPageToken: string }>(list: (pageToken: string) => Promise<Page>): AsyncGenerator<Page> {
  let pageToken = "";
  do {
    const page = await list(pageToken);
    yield page;
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
}
