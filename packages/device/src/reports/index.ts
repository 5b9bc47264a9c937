// Failure reporting on the device: the report model, the durable queue, the uploader.
export {
  DEFAULT_COALESCE_WINDOW_MS,
  DEFAULT_QUEUE_CAPACITY,
  DEFAULT_QUEUE_MAX_BYTES,
  DEFAULT_UPLOAD_INTERVAL_MS,
  DEFAULT_UPLOAD_THRESHOLD,
  REPORT_QUEUE_PATH,
  ReportQueue,
  type ReportQueueOptions,
  readQueueFile,
} from './queue.ts';
export {
  fitReport,
  newReportId,
  type QueuedReport,
  type ReportEvent,
  sanitizeDetails,
  toWire,
} from './report.ts';
export {
  createReportSender,
  ERROR_REPORTS_PATH,
  type ReportSender,
  type UploadResult,
  uploadPending,
} from './uploader.ts';
