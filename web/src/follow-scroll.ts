/** How close to the top (px) the reader asks for older history. */
const NEAR_TOP = 80;

/**
 * The chat's scrolling: it follows the newest output until the reader
 * scrolls up, asks for older history near the top, and for newer near the
 * bottom (what the page dropped while the reader read history).
 *
 * Where the view last scrolled itself to the bottom is kept from scroll
 * events (where layout is fresh), so that no event handler reads layout:
 * measuring before and after each change forced two synchronous layouts of
 * the whole log per event, one of them in front of every first token. The
 * view's own scroll raises its event a frame later, maybe after more output
 * made the log taller: a position at or below the kept one is not the
 * reader scrolling up.
 */
export class FollowScroll {
  /** Where the view last scrolled itself to; Infinity once the reader scrolled up. */
  private scrolledTo = 0;

  constructor(
    private readonly scroller: HTMLElement,
    onNearTop: () => void,
    onNearBottom: () => void,
  ) {
    scroller.addEventListener("scroll", () => {
      const nearBottom = this.nearBottom();
      if (scroller.scrollTop < this.scrolledTo && !nearBottom) this.scrolledTo = Number.POSITIVE_INFINITY;
      // Back at the bottom after scrolling up: follow again.
      else if (!this.following) this.scrolledTo = scroller.scrollTop;
      if (scroller.scrollTop < NEAR_TOP) onNearTop();
      if (nearBottom) onNearBottom();
    });
  }

  /** Whether the view follows the newest output: at the bottom, or where it last put itself. */
  get following(): boolean {
    return this.scrolledTo !== Number.POSITIVE_INFINITY;
  }

  /** Follows the output again (a freshly loaded tail). */
  follow(): void {
    this.scrolledTo = 0;
  }

  scrollToBottom(): void {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.scrolledTo = this.scroller.scrollTop;
  }

  /** Runs `changeAbove` (older entries put above the view, or dropped from there) keeping what the reader looks at in place. */
  keepingPosition(changeAbove: () => void): void {
    const before = this.scroller.scrollHeight;
    changeAbove();
    this.scroller.scrollTop += this.scroller.scrollHeight - before;
  }

  /**
   * Whether there is anything to scroll. A page that does not fill the view
   * raises no scroll event, so the caller asks for older history itself.
   * Reads layout: called once per page of history, not per event.
   */
  overflows(): boolean {
    return this.scroller.scrollHeight > this.scroller.clientHeight;
  }

  /**
   * Whether the reader stands where older history is asked for: near the
   * top, or with nothing to scroll. Reads layout: called once per page.
   */
  wantsOlder(): boolean {
    return this.scroller.scrollTop < NEAR_TOP || !this.overflows();
  }

  private nearBottom(): boolean {
    return this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight < 60;
  }
}
