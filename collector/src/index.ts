/** The collector agent arrives with the collector issue; see README "Where each part lives". */
export const COLLECTOR_PROTOCOL_VERSION = 1;
