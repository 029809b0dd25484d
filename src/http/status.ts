/** A status an HTTP response may carry (RFC 9110 §15: three digits, 100-599). */
export function validStatus(status: number | undefined): boolean {
  return status !== undefined && Number.isInteger(status) && status >= 100 && status <= 599;
}
